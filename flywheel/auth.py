"""API authentication, permissions, organization scoping and rate limits.

A request is authenticated by an organization API key (``Authorization: Api-Key <key>``), which
makes ``request.user`` a :class:`KeyPrincipal`, or by a staff session, which needs the Django
permissions each view declares in ``staff_permissions``. Views scope every query to the
principal's organization through :func:`organization_scope`. Refused keys are limited per address.
"""

import hashlib
import ipaddress
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, serializers, throttling
from rest_framework.request import Request

from flywheel.errors import ApplicationError, NotFound
from flywheel.keycache import (
    VerifiedKey,
    forget_key,
    key_failure_record,
    key_failures_wait,
    key_row,
    remember_key,
    remembered_key,
)
from flywheel.models import Organization, OrganizationAPIKey

KEYWORD = "Api-Key"
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


def key_from_header(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, key = header.partition(" ")
    if scheme != KEYWORD:
        return None
    return key.strip() or None


def client_address(request: HttpRequest) -> str:
    """The client's address for per-address limits: ``REMOTE_ADDR``, or what the first trusted proxy saw.

    With ``TRUSTED_PROXY_COUNT`` proxies in front, the address is the one that many places from
    the end of ``X-Forwarded-For`` (earlier entries are the client's own claims). IPv6 addresses
    count per /64, the block one client usually holds; anything unreadable counts as one address.
    """
    address = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0 and address and ":" not in address:
        return address  # the common case: IPv4 from the server's own socket, no parsing needed
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies > 0 and forwarded:
        address = forwarded[-min(proxies, len(forwarded))]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return f"{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"
    return str(ip)


def login_client_address(request: HttpRequest) -> str | None:
    """The address login lockouts count by (django-axes): :func:`client_address` as a plain IP, or None.

    Stored in an IP address column, so an IPv6 block is given as its first address.
    """
    address = client_address(request)
    return None if address == "unknown" else address.removesuffix("/64")


def _refused() -> exceptions.AuthenticationFailed:
    return exceptions.AuthenticationFailed("Invalid API key.")


class APIKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate an organization API key; unknown, revoked or expired keys are refused (401)."""

    def authenticate(self, request: Request) -> tuple[KeyPrincipal, str] | None:
        key = key_from_header(request._request)
        if key is None:
            return None
        address = client_address(request._request)
        wait = key_failures_wait(address=address)
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="Too many refused API keys from this address.")
        digest = hashlib.sha256(key.encode()).hexdigest()
        remembered = remembered_key(digest)
        try:
            principal = self._verify(key, digest) if remembered is None else self._recheck(remembered, digest)
        except exceptions.AuthenticationFailed:
            key_failure_record(address=address)
            raise
        return principal, principal.key_id

    def _verify(self, key: str, digest: str) -> KeyPrincipal:
        """The full check: look the key up by prefix, compare the hash; remember it when valid."""
        prefix, _, _ = key.partition(".")
        api_key = OrganizationAPIKey.objects.filter(prefix=prefix, revoked=False).select_related("organization").first()
        if api_key is None or api_key.has_expired or not api_key.is_valid(key):
            raise _refused()
        remember_key(digest=digest, api_key=api_key)
        return KeyPrincipal(
            key_id=api_key.pk, key_prefix=api_key.prefix, organization=api_key.organization, role=api_key.role
        )

    def _recheck(self, remembered: VerifiedKey, digest: str) -> KeyPrincipal:
        """A remembered key: read its row (revoked? expired? moved? role?) and its organization, fresh."""
        db = connections[DEFAULT_DB_ALIAS]
        row = key_row(db, remembered.key_id, remembered.organization_param)
        if row is None or row[0]:
            forget_key(digest)
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

# What a staff session needs on a view, by HTTP method: every one of the Django permissions listed.
# Every API view declares it (``staff_permissions = {"GET": ("registry.view_registeredmodel",)}``);
# a method it does not name is closed to staff sessions.
StaffPermissions = Mapping[str, tuple[str, ...]]


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


def staff_permission_sets(view: Any, method: str) -> list[tuple[str, ...]]:
    """The permission sets, any one of which lets a staff session make a ``method`` request of ``view``.

    HEAD is a GET; OPTIONS (the endpoint's description) is open to whoever may use any method.
    """
    declared: StaffPermissions = getattr(view, "staff_permissions", None) or {}
    if method == "OPTIONS":
        return list(declared.values())
    needed = declared.get("GET" if method == "HEAD" else method)
    return [] if needed is None else [needed]


def check_staff_permissions(request: Request, view: Any) -> bool:
    """Whether the staff user may make this request; 403 naming what is missing when not."""
    user = request.user
    if not is_staff_user(user):
        return False
    choices = staff_permission_sets(view, request.method or "")
    if any(user.has_perms(needed) for needed in choices):
        return True
    if not choices:
        raise exceptions.PermissionDenied(f"Staff sessions may not make {request.method} requests here.")
    missing = ", ".join(name for name in choices[0] if not user.has_perm(name))
    raise exceptions.PermissionDenied(f"A staff session needs the permission {missing} for this.")


class IsOrganizationMember(permissions.BasePermission):
    """An organization API key of any role, or a staff session holding the view's ``staff_permissions``.

    Staff follow the Django permissions the admin asks for the same read or write; superusers
    hold them all.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if isinstance(user, KeyPrincipal):
            return self.key_may(user)
        return check_staff_permissions(request, view)

    def key_may(self, principal: KeyPrincipal) -> bool:
        return True


class IsOps(IsOrganizationMember):
    """An ``ops`` API key, or a staff session holding the view's ``staff_permissions``.

    Ops keys may run training, deploy and promote within their organization; staff need the
    Django permission the admin asks for the same action (e.g. ``registry.deploy_model``).
    """

    message = "This needs an ops API key, or a staff user with the permission."

    def key_may(self, principal: KeyPrincipal) -> bool:
        return principal.is_ops


class ApiDocsAccess(permissions.BasePermission):
    """The OpenAPI schema and Swagger UI: open while ``API_DOCS_PUBLIC``, else an API key or a staff session."""

    message = "The API documentation needs an API key or a staff session."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if settings.API_DOCS_PUBLIC or isinstance(user, KeyPrincipal) or is_staff_user(user):
            return True
        if user is None:
            raise exceptions.NotAuthenticated(
                "The API documentation needs an API key or a staff session (log in at /admin/)."
            )
        return False


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

    A fixed-window counter in the default cache: one increment per request, whatever the traffic,
    where DRF's sliding window reads and rewrites the whole request history. A key may send up to
    twice its rate across a window boundary. Per process with the default local-memory cache,
    shared by every process when ``CACHE_URL`` names a shared cache (Redis, Memcached).
    """

    scope = "api_key"
    window_ends: float = 0.0
    num_requests: int  # set by SimpleRateThrottle.__init__ from the rate
    duration: int

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        self.window_ends = (window + 1) * self.duration
        return self.counted(f"{key}:{window}") <= self.num_requests

    def counted(self, key: str) -> int:
        """Add this request to the window's counter and return the count (one cache call, usually)."""
        try:
            return int(self.cache.incr(key))
        except ValueError:  # the window's first request: no counter yet
            if self.cache.add(key, 1, timeout=self.duration + 1):
                return 1
            return int(self.cache.incr(key))

    def wait(self) -> float | None:
        return max(self.window_ends - self.timer(), 0.001)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if isinstance(user, KeyPrincipal):
            ident = f"key:{user.key_id}"
        elif user is not None and user.is_authenticated:
            ident = f"user:{user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
