"""API authentication: organization API keys (``Authorization: Api-Key <key>``) or staff sessions.

A request authenticated by a key carries a :class:`KeyPrincipal` as ``request.user`` and the key
itself as ``request.auth``; views scope every query to ``principal.organization``.
"""

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.request import Request

from flywheel.models import Organization, OrganizationAPIKey

KEYWORD = "Api-Key"


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


class APIKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate an organization API key; unknown, revoked or expired keys are refused."""

    def authenticate(self, request: Request) -> tuple[KeyPrincipal, OrganizationAPIKey] | None:
        key = key_from_header(request._request)
        if key is None:
            return None
        prefix, _, _ = key.partition(".")
        api_key = (
            OrganizationAPIKey.objects.filter(prefix=prefix, revoked=False).select_related("organization").first()
        )
        if api_key is None or api_key.has_expired or not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed("Invalid API key.")
        principal = KeyPrincipal(
            key_id=api_key.pk,
            key_prefix=api_key.prefix,
            organization=api_key.organization,
            role=api_key.role,
        )
        return principal, api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class IsOrganizationMember(permissions.BasePermission):
    """An organization API key of any role, or an active staff user with a session."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if isinstance(user, KeyPrincipal):
            return True
        return bool(user and user.is_authenticated and user.is_staff and user.is_active)


class IsOps(IsOrganizationMember):
    """An ``ops`` API key, or a staff user: may run training, deploy and promote."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if isinstance(user, KeyPrincipal):
            return user.is_ops
        return super().has_permission(request, view)


class APIKeyRateThrottle(throttling.SimpleRateThrottle):
    """Per-key (or per staff user) request rate limit, ``API_RATE_LIMIT`` (default 6000/min)."""

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
