"""Reads for tenancy: organizations and their API keys."""

import contextlib
import uuid

from django.db.models import Q, QuerySet

from flywheel.errors import NotFound
from flywheel.models import Organization, OrganizationAPIKey


def organization_get(*, slug_or_id: str) -> Organization:
    """An organization by slug or id (for commands), raising :class:`NotFound`."""
    query = Q(slug=slug_or_id)
    with contextlib.suppress(ValueError):  # not an id: a slug only
        query |= Q(pk=uuid.UUID(slug_or_id))
    organization = Organization.objects.filter(query).first()
    if organization is None:
        raise NotFound(f"No organization has the slug or id {slug_or_id!r}.")
    return organization


def api_keys_of(*, organization: Organization) -> QuerySet[OrganizationAPIKey]:
    """An organization's API keys, newest first (their prefixes, never their secrets)."""
    return OrganizationAPIKey.objects.filter(organization=organization).order_by("-created")
