"""When a write of outcomes may simply run again: PostgreSQL aborted it to let a concurrent one through.

A deadlock or a serialization failure rolls the whole transaction back, so running it again from
the start is safe. The writers lock rows in a fixed order so that this stays rare; these helpers
are the bounded retry behind that.
"""

import random
import time

from django.db import OperationalError

ATTEMPTS = 5
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a deadlock or serialization failure, after which the transaction may run again."""
    cause = exc.__cause__
    state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return isinstance(exc, OperationalError) and state in TRANSIENT_SQLSTATES


def pause(attempt: int) -> None:
    """Wait a little before attempt ``attempt + 1``, at random, so that colliding writers part ways."""
    time.sleep(random.uniform(0, 0.02 * 2**attempt))
