"""API authentication: organization API keys (``Authorization: Api-Key <key>``) or staff sessions.

A request authenticated by a key carries a :class:`KeyPrincipal` as ``request.user`` and the
key's id as ``request.auth``; views scope every query to ``principal.organization`` through
:func:`organization_scope`.

**Verified-key cache.** Checking a key through the ORM (build and compile the query, two model
instances, the hash) costs most of a small request's CPU. So once a key has been verified, the
process remembers it for :data:`KEY_CACHE_SECONDS`, keyed by a SHA-256 of the full key (the
secret itself is never kept). A remembered key still reads its own row on every request, by
primary key, in one small prepared SQL statement joined to its organization (:func:`_key_row`). The guarantee: a
key that is revoked, expires, changes role, moves to another organization or is deleted is
refused (or gets its new role) on the very next request that starts after the change commits,
in every process, with no invalidation to broadcast; the organization's ``routing_version`` is
read by that same statement, so routing sees a traffic change at once. Only the organization's
name and slug (display fields) may be up to :data:`KEY_CACHE_SECONDS` old. The cache saves the
ORM, the hash check and the wider row; it holds keys that verified, never failures, so it grows
no larger than the set of valid keys in use.
"""

import hashlib
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, serializers, throttling
from rest_framework.request import Request

from flywheel.errors import ApplicationError, NotFound
from flywheel.models import Organization, OrganizationAPIKey

KEYWORD = "Api-Key"
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
ORGANIZATION_FIELDS = ["id", "name", "slug", "routing_version"]


@dataclass(frozen=True)
class KeyPrincipal:
    """Who is calling when an API key authenticated the request."""

    key_id: str
    key_prefix: str
    organization: Organization
    role: str

    is_authenticated = True
    is_staff = False
    is_active = True

    @property
    def is_ops(self) -> bool:
        return self.role == OrganizationAPIKey.Role.OPS

    def __str__(self) -> str:
        return f"api-key:{self.key_prefix}"


@dataclass(frozen=True)
class _Verified:
    key_id: str
    key_prefix: str
    organization_id: uuid.UUID
    organization_param: Any  # the id as the database driver takes it
    organization_name: str
    organization_slug: str
    until: float


# Plain dict operations (get, set, pop) are atomic under the GIL, so threads may share it.
_verified: dict[str, _Verified] = {}


def key_from_header(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, key = header.partition(" ")
    if scheme != KEYWORD:
        return None
    return key.strip() or None


def forget_verified_keys() -> None:
    """Empty this process's verified-key cache (tests; a deliberate cold start)."""
    _verified.clear()


def _refused() -> exceptions.AuthenticationFailed:
    return exceptions.AuthenticationFailed("Invalid API key.")


class APIKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate an organization API key; unknown, revoked or expired keys are refused (401)."""

    def authenticate(self, request: Request) -> tuple[KeyPrincipal, str] | None:
        key = key_from_header(request._request)
        if key is None:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        remembered = _verified.get(digest)
        if remembered is not None and remembered.until > time.monotonic():
            principal = self._recheck(remembered, digest)
        else:
            principal = self._verify(key, digest)
        return principal, principal.key_id

    def _verify(self, key: str, digest: str) -> KeyPrincipal:
        """The full check: look the key up by prefix, compare the hash; remember it when valid."""
        prefix, _, _ = key.partition(".")
        api_key = OrganizationAPIKey.objects.filter(prefix=prefix, revoked=False).select_related("organization").first()
        if api_key is None or api_key.has_expired or not api_key.is_valid(key):
            raise _refused()
        organization = api_key.organization
        _verified[digest] = _Verified(
            key_id=api_key.pk,
            key_prefix=api_key.prefix,
            organization_id=organization.pk,
            organization_param=Organization._meta.pk.get_db_prep_value(organization.pk, connection),
            organization_name=organization.name,
            organization_slug=organization.slug,
            until=time.monotonic() + KEY_CACHE_SECONDS,
        )
        return KeyPrincipal(key_id=api_key.pk, key_prefix=api_key.prefix, organization=organization, role=api_key.role)

    def _recheck(self, remembered: _Verified, digest: str) -> KeyPrincipal:
        """A remembered key: read its row (revoked? expired? moved? role?) and its organization, fresh."""
        db = connections[DEFAULT_DB_ALIAS]
        row = _key_row(db, remembered.key_id, remembered.organization_param)
        if row is None or row[0]:
            _verified.pop(digest, None)
            raise _refused()
        _, role, routing_version = row
        values = [
            remembered.organization_id,
            remembered.organization_name,
            remembered.organization_slug,
            routing_version,
        ]
        organization = Organization.from_db(db.alias, ORGANIZATION_FIELDS, values)
        return KeyPrincipal(
            key_id=remembered.key_id, key_prefix=remembered.key_prefix, organization=organization, role=role
        )

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


# One server-binding cursor per PostgreSQL connection, kept for the key row (see _key_row).
_key_cursors: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _key_row(db: BaseDatabaseWrapper, key_id: str, organization_param: Any) -> Any:
    """The remembered key's row: (refused?, role, routing version), or None when it is gone.

    On PostgreSQL the statement runs on a server-binding cursor kept for the connection: Django's
    own cursors bind parameters on the client, so the server parses and plans every statement
    afresh, while this one is prepared by psycopg after its fifth run (``prepare_threshold``),
    which takes the round trip from about 200 to 70 microseconds here. Database errors still go
    through ``wrap_database_errors`` (so a broken connection is discarded as usual); execute
    wrappers are skipped, except where queries are logged (DEBUG, tests), where Django's own
    cursor wrapper counts and logs it like any query. Behind a transaction-pooling PgBouncer,
    prepared statements need its ``max_prepared_statements``.
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
        # Typed loosely: the stubs say this wraps a wrapper; Django passes it the driver's cursor.
        wrapped: Any = db.make_debug_cursor(raw)
        wrapped.execute(KEY_ROW_SQL_POSTGRESQL, [key_id, organization_param])
        return wrapped.fetchone()
    with db.wrap_database_errors:
        raw.execute(KEY_ROW_SQL_POSTGRESQL, [key_id, organization_param])
        return raw.fetchone()


class APIKeySchema(OpenApiAuthenticationExtension):
    """The ``Api-Key`` scheme in the OpenAPI document (Swagger UI's Authorize button)."""

    target_class = APIKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "An organization API key: `Api-Key <prefix>.<secret>`.",
        }


# --- Permissions ---------------------------------------------------------------------------------


def request_actor(request: Request) -> AbstractBaseUser | KeyPrincipal | None:
    """Who the audit trail names for this request: the key's principal or the staff user."""
    user = request.user
    if isinstance(user, (KeyPrincipal, AbstractBaseUser)):
        return user
    return None


def is_staff_user(user: Any) -> bool:
    return bool(
        user and not isinstance(user, KeyPrincipal) and user.is_authenticated and user.is_staff and user.is_active
    )


class IsOrganizationMember(permissions.BasePermission):
    """An organization API key of any role, or an active staff user with a session."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, KeyPrincipal) or is_staff_user(request.user)


class IsOps(IsOrganizationMember):
    """An ``ops`` API key, or a staff user holding the view's ``staff_permission``.

    Ops keys may run training, deploy and promote within their organization; staff need the
    Django permission the admin asks for the same action (e.g. ``registry.deploy_model``).
    """

    message = "This needs an ops API key, or a staff user with the permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if isinstance(user, KeyPrincipal):
            return user.is_ops
        needed = getattr(view, "staff_permission", None)
        return is_staff_user(user) and (needed is None or user.has_perm(needed))


class OrganizationScopeSerializer(serializers.Serializer):
    """The ``organization_id`` a request may name: a key's own (or none), any one for staff."""

    organization_id = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text="An API key acts on its own organization (leave empty or name it); "
        "staff name any organization, or leave it empty for the global pool.",
    )


def organization_scope(request: Request, organization_id: uuid.UUID | None) -> Organization | None:
    """The organization a request acts on; ``None`` is the global pool (staff only).

    A key acts on its own organization: ``organization_id`` may be omitted or name it; any other
    id answers 404, exactly like an id that does not exist. Staff may name any organization, or
    none for the global pool.
    """
    user = request.user
    if isinstance(user, KeyPrincipal):
        if organization_id is not None and organization_id != user.organization.pk:
            raise NotFound(f"No organization has the id {organization_id}.")
        return user.organization
    if organization_id is None:
        return None
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        raise NotFound(f"No organization has the id {organization_id}.")
    return organization


def organization_required(request: Request, organization_id: uuid.UUID | None) -> Organization:
    """Like :func:`organization_scope`, for operations that need an organization (not the global pool)."""
    organization = organization_scope(request, organization_id)
    if organization is None:
        raise ApplicationError(
            "organization_id is required: a staff session acts on the organization it names.",
            code="organization_required",
            details={"organization_id": ["This field is required for a staff session."]},
        )
    return organization


class APIKeyRateThrottle(throttling.SimpleRateThrottle):
    """Per-key (or per staff user) request rate limit, ``API_RATE_LIMIT`` (default 6000/min).

    Counted in the default cache: per process with the default local-memory cache, shared by
    every process when ``CACHE_URL`` names a shared cache (Redis, Memcached).
    """

    scope = "api_key"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if isinstance(user, KeyPrincipal):
            ident = f"key:{user.key_id}"
        elif user is not None and user.is_authenticated:
            ident = f"user:{user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
