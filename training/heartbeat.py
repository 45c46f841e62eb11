"""The heartbeat of a claimed step: a thread that renews the claim while the step works.

A claim lives for a short lease (see :func:`training.transitions.step_lease`), so a worker killed
in the middle of an export or an upload is taken over within about a minute; the heartbeat keeps a
long step that is still alive from being taken over.
"""

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connections

from training.transitions import Claim, run_claim_renew, step_lease

logger = logging.getLogger(__name__)


def heartbeat_interval() -> float:
    """Seconds between renewals: ``TRAINING_HEARTBEAT_INTERVAL``, else a quarter of the lease."""
    configured = getattr(settings, "TRAINING_HEARTBEAT_INTERVAL", None)
    return float(configured) if configured is not None else step_lease().total_seconds() / 4


@contextmanager
def claim_heartbeat(*, run_id: uuid.UUID, claim: Claim) -> Iterator[None]:
    """Renew ``claim`` every :func:`heartbeat_interval` seconds until the block ends or the claim is lost."""
    stop = threading.Event()
    beating = threading.Thread(
        target=_beat, args=(run_id, claim, stop, heartbeat_interval()), name=f"heartbeat {run_id}", daemon=True
    )
    beating.start()
    try:
        yield
    finally:
        stop.set()
        beating.join()


def _beat(run_id: uuid.UUID, claim: Claim, stop: threading.Event, interval: float) -> None:
    """The thread's loop: renew until stopped or refused; its own database connection is closed at the end."""
    try:
        while not stop.wait(interval):
            if not run_claim_renew(run_id=run_id, claim=claim):
                return  # the step moved on, or the run ended or was taken over
    except Exception:
        logger.exception("Heartbeat of training run %s stopped", run_id)
    finally:
        connections.close_all()
