"""Writes for tenancy: organizations and their API keys."""

from django.db import transaction
from django.utils.text import slugify

from flywheel.errors import Conflict, NotFound
from flywheel.models import Organization, OrganizationAPIKey


@transaction.atomic
def organization_create(*, name: str, slug: str = "") -> Organization:
    """Create an organization; its slug (derived from the name by default) must be new."""
    slug = slug or slugify(name)
    if Organization.objects.filter(slug=slug).exists():
        raise Conflict(f"An organization with slug {slug!r} already exists.")
    organization = Organization(name=name, slug=slug)
    organization.full_clean()
    organization.save()
    return organization


def api_key_create(
    *, organization: Organization, role: str = OrganizationAPIKey.Role.AGENT, name: str = ""
) -> tuple[OrganizationAPIKey, str]:
    """Create an API key and return it with its secret, which is stored only as a hash."""
    if role not in OrganizationAPIKey.Role.values:
        raise ValueError(f"Unknown role {role!r}.")
    api_key, secret = OrganizationAPIKey.objects.create_key(
        name=name or f"{organization.slug} {role}", organization=organization, role=role
    )
    return api_key, secret  # type: ignore[return-value]


def api_key_revoke(*, organization: Organization, prefix: str) -> OrganizationAPIKey:
    """Revoke one of the organization's keys by its prefix; it is refused from the next request on.

    Idempotent: revoking a revoked key changes nothing. Raises :class:`NotFound` for a prefix the
    organization does not have.
    """
    api_key = OrganizationAPIKey.objects.filter(organization=organization, prefix=prefix).first()
    if api_key is None:
        raise NotFound(f"{organization.slug} has no API key with the prefix {prefix!r}.")
    OrganizationAPIKey.objects.filter(pk=api_key.pk, revoked=False).update(revoked=True)
    api_key.refresh_from_db(fields=["revoked"])
    return api_key
