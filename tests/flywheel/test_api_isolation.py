"""The organization isolation matrix: every endpoint, given another organization's ids, answers 404.

Exactly as for ids that do not exist: the same status and the same error code, so that a key
cannot even learn whether another organization's object exists.
"""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from outcomes.models import OutcomeLabel
from registry.models import RegisteredModel
from tests.api_clients import Tenant, assert_error
from tests.registry.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db

Call = Callable[[APIClient, str], Any]

# Each endpoint as a call naming an organization id, or the id of an object, chosen by the test.
ORGANIZATION_CALLS: dict[str, Call] = {
    "POST /api/outcomes": lambda c, org: c.post(
        f"/api/outcomes?organization_id={org}", {"external_id": "x", "body": "b"}, format="json"
    ),
    "POST /api/outcomes/events": lambda c, org: c.post(
        f"/api/outcomes/events?organization_id={org}", [{"external_id": "x", "type": "opened"}], format="json"
    ),
    "GET /api/route": lambda c, org: c.get("/api/route", {"organization_id": org, "lead": "x"}),
    "GET /training/models": lambda c, org: c.get("/training/models", {"organization_id": org}),
    "GET /training/leaderboard": lambda c, org: c.get("/training/leaderboard", {"organization_id": org}),
    "GET /training/stats": lambda c, org: c.get("/training/stats", {"organization_id": org}),
    "POST /training/promote-winner": lambda c, org: c.post(
        "/training/promote-winner", {"organization_id": org}, format="json"
    ),
}
MODEL_CALLS: dict[str, Call] = {
    "POST /training/deploy/{registry_id}": lambda c, model: c.post(
        f"/training/deploy/{model}", {"traffic_percentage": 100.0, "ab_test_group": "control"}, format="json"
    ),
}


@pytest.mark.parametrize("endpoint", list(ORGANIZATION_CALLS))
def test_another_organizations_id_answers_404_like_a_missing_one(tenant: Tenant, other: Tenant, endpoint: str) -> None:
    call = ORGANIZATION_CALLS[endpoint]
    theirs = assert_error(call(tenant.ops, str(other.organization.pk)), 404)
    missing = assert_error(call(tenant.ops, str(uuid.uuid4())), 404)
    assert theirs["code"] == missing["code"] == "not_found"
    assert str(other.organization.pk) in str(theirs["message"])


@pytest.mark.parametrize("endpoint", list(ORGANIZATION_CALLS))
def test_naming_its_own_organization_is_allowed(tenant: Tenant, endpoint: str) -> None:
    response = ORGANIZATION_CALLS[endpoint](tenant.ops, str(tenant.organization.pk))
    message = response.json().get("error", {}).get("message", "") if response.status_code >= 400 else ""
    assert response.status_code != 403
    assert not message.startswith("No organization has the id"), message


@pytest.mark.parametrize("endpoint", list(MODEL_CALLS))
def test_another_organizations_model_answers_404_like_a_missing_one(
    tenant: Tenant, other: Tenant, endpoint: str
) -> None:
    theirs = RegisteredModelFactory.create(organization=other.organization)
    call = MODEL_CALLS[endpoint]
    mine = assert_error(call(tenant.ops, str(theirs.pk)), 404)
    missing = assert_error(call(tenant.ops, str(uuid.uuid4())), 404)
    assert mine["code"] == missing["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.status == RegisteredModel.Status.READY


def test_lists_never_show_another_organizations_models(tenant: Tenant, other: Tenant) -> None:
    theirs = RegisteredModelFactory.create(organization=other.organization)
    listed = {m["id"] for m in tenant.agent.get("/training/models").json()["models"]}
    assert str(theirs.pk) not in listed
    board = tenant.agent.get("/training/leaderboard", {"min_samples": 0}).json()["leaderboard"]
    assert str(theirs.pk) not in {row["id"] for row in board}


def test_events_never_touch_another_organizations_outcomes(tenant: Tenant, other: Tenant) -> None:
    other.agent.post("/api/outcomes", {"external_id": "shared-id", "body": "theirs"}, format="json")
    body = tenant.agent.post("/api/outcomes/events", [{"external_id": "shared-id", "type": "opened"}], format="json")
    assert body.json()["results"][0]["ok"] is False
    assert OutcomeLabel.objects.get(external_id="shared-id").opened_at is None


def test_the_same_external_id_in_two_organizations_is_two_outcomes(tenant: Tenant, other: Tenant) -> None:
    for who in (tenant, other):
        who.agent.post(
            "/api/outcomes", {"external_id": "msg-1", "body": f"from {who.organization.slug}"}, format="json"
        )
    assert OutcomeLabel.objects.filter(external_id="msg-1").count() == 2
    mine = OutcomeLabel.objects.get(external_id="msg-1", organization=tenant.organization)
    assert mine.body == f"from {tenant.organization.slug}"


def test_route_never_uses_another_organizations_models(tenant: Tenant, other: Tenant) -> None:
    from registry.services import model_deploy

    model_deploy(model=RegisteredModelFactory.create(organization=other.organization))
    assert_error(tenant.agent.get("/api/route", {"lead": "x"}), 404, "no_model_deployed")
