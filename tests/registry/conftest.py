"""Registry fixtures: a clean routing cache, ML ops staff with and without the deploy permission, two models."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client

from flywheel.models import Organization
from registry import routing
from tests.registry.factories import OrganizationFactory, UserFactory


@pytest.fixture(autouse=True)
def _cold_routing_cache() -> Iterator[None]:
    routing.clear_cache()
    yield
    routing.clear_cache()


@pytest.fixture
def organization() -> Organization:
    return OrganizationFactory.create()


def staff_client(client: Client, *codenames: str) -> Client:
    """``client`` logged in as a staff user holding exactly the registry permissions ``codenames``."""
    user = UserFactory.create(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="registry", codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def ops_client(client: Client) -> Client:
    """Staff who may view, change and deploy registered models."""
    return staff_client(client, "view_registeredmodel", "change_registeredmodel", "deploy_model")


@pytest.fixture
def viewer_client(client: Client) -> Client:
    """Staff who may view and change registered models but not move traffic."""
    return staff_client(client, "view_registeredmodel", "change_registeredmodel")


def texts(response: Any) -> list[str]:
    """The admin's messages of a response."""
    return [str(message) for message in get_messages(response.wsgi_request)]
