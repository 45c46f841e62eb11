"""Experiment fixtures: the registry's (an organization, a cold routing cache) and staff with given permissions."""

from django.contrib.auth.models import Permission
from django.test import Client

from tests.registry.conftest import _cold_routing_cache, organization
from tests.registry.factories import UserFactory

__all__ = ["_cold_routing_cache", "organization", "staff_client"]


def staff_client(client: Client, *codenames: str) -> Client:
    """``client`` logged in as a staff user holding exactly the registry and experiment permissions ``codenames``."""
    user = UserFactory.create(is_staff=True)
    permissions = Permission.objects.filter(
        content_type__app_label__in=["registry", "experiments"], codename__in=codenames
    )
    user.user_permissions.set(permissions)
    client.force_login(user)
    return client
