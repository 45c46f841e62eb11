"""The per-process cache of verified API keys, the statement that rechecks one, and refused keys per address.

A key that verified is remembered for :data:`KEY_CACHE_SECONDS`, keyed by a SHA-256 of the full
key (never the secret). A remembered key still reads its own row on every request
(:func:`key_row`), so a revoked, expired, moved or re-roled key takes effect on the next request.
Refused keys are counted per client address in Django's cache, in fixed windows.
"""

import math
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from flywheel.models import Organization, OrganizationAPIKey

KEY_CACHE_SECONDS = 5.0

# One row per request for a remembered key: is it still usable (not revoked, not expired, still
# of the same organization), with which role, and the organization's routing version. Expiry is
# compared by the database, as the ORM would compare it.
KEY_ROW_SQL = (
    "SELECT k.revoked OR (k.expiry_date IS NOT NULL AND k.expiry_date < {now}), k.role, o.routing_version "
    "FROM flywheel_organizationapikey k JOIN flywheel_organization o "
    "ON o.id = k.organization_id WHERE k.id = %s AND k.organization_id = %s"
)
# On PostgreSQL the server's clock, which saves sending one; elsewhere the time as Django stores it.
KEY_ROW_SQL_POSTGRESQL = KEY_ROW_SQL.format(now="statement_timestamp()")
KEY_ROW_SQL_OTHER = KEY_ROW_SQL.format(now="%s")


@dataclass(frozen=True)
class VerifiedKey:
    """What the process remembers of a key that verified: ids and display fields, no secret."""

    key_id: str
    key_prefix: str
    organization_id: uuid.UUID
    organization_param: Any  # the id as the database driver takes it
    organization_name: str
    organization_slug: str
    until: float


# Plain dict operations (get, set, pop) are atomic under the GIL, so threads may share it.
_verified: dict[str, VerifiedKey] = {}


def remember_key(*, digest: str, api_key: OrganizationAPIKey) -> None:
    """Remember a key that has just verified, for :data:`KEY_CACHE_SECONDS`."""
    organization = api_key.organization
    _verified[digest] = VerifiedKey(
        key_id=api_key.pk,
        key_prefix=api_key.prefix,
        organization_id=organization.pk,
        organization_param=Organization._meta.pk.get_db_prep_value(organization.pk, connection),
        organization_name=organization.name,
        organization_slug=organization.slug,
        until=time.monotonic() + KEY_CACHE_SECONDS,
    )


def remembered_key(digest: str) -> VerifiedKey | None:
    """The remembered key of this digest, or None when there is none or its time is up."""
    remembered = _verified.get(digest)
    if remembered is not None and remembered.until > time.monotonic():
        return remembered
    return None


def forget_key(digest: str) -> None:
    """Forget one key (it was refused on its recheck)."""
    _verified.pop(digest, None)


def forget_verified_keys() -> None:
    """Empty this process's verified-key cache (tests; a deliberate cold start)."""
    _verified.clear()


# One server-binding cursor per PostgreSQL connection, kept for the key row (see key_row).
_key_cursors: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def key_row(db: BaseDatabaseWrapper, key_id: str, organization_param: Any) -> Any:
    """The remembered key's row: (refused?, role, routing version), or None when it is gone.

    On PostgreSQL the statement runs on a server-binding cursor kept for the connection, which
    psycopg prepares after its fifth run; database errors still go through Django's wrapper.
    """
    if db.vendor != "postgresql":
        now = db.ops.adapt_datetimefield_value(timezone.now())
        with db.cursor() as cursor:
            cursor.execute(KEY_ROW_SQL_OTHER, [now, key_id, organization_param])
            return cursor.fetchone()
    db.ensure_connection()
    raw: Any = _key_cursors.get(db.connection)
    if raw is None or raw.closed:
        import psycopg

        raw = _key_cursors[db.connection] = psycopg.Cursor(db.connection)
    if db.queries_logged:
        # DEBUG and tests: Django's cursor wrapper counts and logs it like any query.
        # Typed loosely: the stubs say this wraps a wrapper; Django passes it the driver's cursor.
        wrapped: Any = db.make_debug_cursor(raw)
        wrapped.execute(KEY_ROW_SQL_POSTGRESQL, [key_id, organization_param])
        return wrapped.fetchone()
    with db.wrap_database_errors:
        raw.execute(KEY_ROW_SQL_POSTGRESQL, [key_id, organization_param])
        return raw.fetchone()


# --- Refused keys per client address -------------------------------------------------------------


def _failures_slot(now: float) -> tuple[int, int]:
    """The current window's number and its length in seconds (``API_KEY_FAILURE_WINDOW``)."""
    window = max(1, settings.API_KEY_FAILURE_WINDOW)
    return int(now // window), window


def _failures_key(address: str, slot: int) -> str:
    return f"flywheel:key-failures:{address}:{slot}"


def key_failures_wait(*, address: str) -> int | None:
    """Seconds until ``address`` may present keys again; None while it is under the limit.

    One cache read: the count of this window, compared with ``API_KEY_FAILURE_LIMIT`` (0: no limit).
    """
    limit = settings.API_KEY_FAILURE_LIMIT
    if limit <= 0:
        return None
    now = time.time()
    slot, window = _failures_slot(now)
    if (cache.get(_failures_key(address, slot)) or 0) < limit:
        return None
    return max(1, math.ceil((slot + 1) * window - now))


def key_failure_record(*, address: str) -> None:
    """Count one refused key for ``address`` in the current window (an atomic add or increment)."""
    slot, window = _failures_slot(time.time())
    key = _failures_key(address, slot)
    if cache.add(key, 1, timeout=window):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between the add and the increment
        cache.set(key, 1, timeout=window)
