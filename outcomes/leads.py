"""The lead an outcome belongs to, kept only as a keyed hash of the agent's lead key.

A lead key may be an email address, so it is never stored: ``lead_key_hash`` is the
HMAC-SHA256 of the key under ``LEAD_KEY_HASH_SECRET`` (by default a key derived from
``SECRET_KEY``), hex-encoded. The same key always gives the same hash, which is all the
experiments need to group a lead's messages; without the secret the hash cannot be tested
against a list of addresses. Rotating the secret splits every lead in running tests in two.
"""

import hashlib
import hmac

from django.conf import settings

LEAD_KEY_MAX_LENGTH = 255  # as GET /api/route's ``lead``
LEAD_HASH_LENGTH = 64


def _secret() -> bytes:
    """The HMAC key: ``LEAD_KEY_HASH_SECRET``, or one derived from ``SECRET_KEY`` for this purpose only."""
    configured = getattr(settings, "LEAD_KEY_HASH_SECRET", "")
    if configured:
        return str(configured).encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"flywheel lead key hash", hashlib.sha256).digest()


def lead_key_hash(lead_key: str) -> str:
    """The stored form of a lead key: its keyed hash (64 hex characters)."""
    return hmac.new(_secret(), lead_key.encode(), hashlib.sha256).hexdigest()
