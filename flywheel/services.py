"""Writes for tenancy: organizations and their API keys."""

from django.db import transaction
from django.utils.text import slugify

from flywheel.errors import Conflict
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
