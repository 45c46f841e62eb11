"""API test fixtures: two organizations, their keys, and clients that speak for them."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from flywheel.keycache import forget_verified_keys
from flywheel.models import Organization, OrganizationAPIKey
from registry import routing
from tests.factories import OrganizationFactory, UserFactory, make_api_key


@pytest.fixture(autouse=True)
def _cold_caches() -> Iterator[None]:
    """Each test starts with no remembered keys and no routing tables, and leaves none."""
    forget_verified_keys()
    routing.clear_cache()
    yield
    forget_verified_keys()
    routing.clear_cache()


@dataclass
class Tenant:
    """An organization with an agent key and an ops key, and a client for each."""

    organization: Organization
    agent: APIClient
    ops: APIClient
    agent_key: str
    ops_key: str


def key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def make_tenant() -> Tenant:
    organization = OrganizationFactory.create()
    agent_key = make_api_key(organization, OrganizationAPIKey.Role.AGENT)
    ops_key = make_api_key(organization, OrganizationAPIKey.Role.OPS)
    return Tenant(organization, key_client(agent_key), key_client(ops_key), agent_key, ops_key)


@pytest.fixture
def tenant() -> Tenant:
    return make_tenant()


@pytest.fixture
def other() -> Tenant:
    """Another organization: nothing of it may ever be seen or changed by ``tenant``."""
    return make_tenant()


def staff_client(*permissions: str) -> APIClient:
    """A staff session holding exactly ``permissions`` (``app_label.codename``)."""
    user = UserFactory.create(is_staff=True)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def staff() -> APIClient:
    """ML ops staff: may deploy models and run training, in any organization or the global pool."""
    return staff_client("registry.deploy_model", "training.run_training")


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has ``status`` and the one error shape; returns its ``error`` object."""
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error
