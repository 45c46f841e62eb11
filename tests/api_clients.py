"""API test helpers: an organization with its keys and clients, staff sessions, the error shape."""

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from flywheel.models import Organization, OrganizationAPIKey
from tests.factories import OrganizationFactory, UserFactory, make_api_key

# Every permission an API endpoint asks of a staff session: what the suite's ML ops staff hold.
ML_OPS_PERMISSIONS = (
    "experiments.view_experiment",
    "registry.view_registeredmodel",
    "registry.deploy_model",
    "training.view_trainingrun",
    "training.run_training",
    "outcomes.view_outcomelabel",
    "outcomes.add_outcomelabel",
    "outcomes.change_outcomelabel",
)


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


def staff_client(*permissions: str) -> APIClient:
    """A staff session holding exactly ``permissions`` (``app_label.codename``)."""
    user = UserFactory.create(is_staff=True)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = APIClient()
    client.force_login(user)
    return client


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
