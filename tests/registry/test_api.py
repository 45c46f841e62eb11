"""GET /api/route, GET /training/models, GET /training/leaderboard."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from registry.models import RegisteredModel
from registry.services import model_deploy, model_performance_update, model_start_ab_test
from tests.api_clients import Tenant, assert_error
from tests.registry.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db


def deployed(organization: Any, **fields: Any) -> RegisteredModel:
    model = RegisteredModelFactory.create(organization=organization, **fields)
    return model_deploy(model=model)


# --- Routing --------------------------------------------------------------------------------------


def test_route_answers_the_deployed_model(tenant: Tenant) -> None:
    model = deployed(tenant.organization)
    response = tenant.agent.get("/api/route", {"lead": "lead-42"})
    assert response.status_code == 200
    assert response.json() == {
        "registry_id": str(model.pk),
        "model_id": model.model_id,
        "model_version": model.model_version,
        "ab_test_group": "control",
        "model": model.model_id,
        "base_url": None,  # a local model: no server agents can call
    }


@pytest.mark.parametrize("query", [{"lead": "x" * 256}, {"lead": ""}, {"organization_id": "not-a-uuid"}])
def test_route_validates_its_parameters(tenant: Tenant, query: dict[str, str]) -> None:
    deployed(tenant.organization)
    error = assert_error(tenant.agent.get("/api/route", query), 400, "invalid")
    assert set(error["details"]) == set(query)


def test_route_is_sticky_per_lead_during_an_ab_test(tenant: Tenant) -> None:
    deployed(tenant.organization)
    variant = RegisteredModelFactory.create(organization=tenant.organization)
    model_start_ab_test(variant=variant, variant_traffic=50.0)
    picks = {lead: tenant.agent.get("/api/route", {"lead": lead}).json()["registry_id"] for lead in map(str, range(40))}
    again = {lead: tenant.agent.get("/api/route", {"lead": lead}).json()["registry_id"] for lead in map(str, range(40))}
    assert picks == again
    assert len(set(picks.values())) == 2


def test_route_falls_back_to_the_global_pool(tenant: Tenant) -> None:
    shared = deployed(None)
    assert tenant.agent.get("/api/route", {"lead": "x"}).json()["registry_id"] == str(shared.pk)


def test_route_answers_404_with_a_clear_message_when_nothing_is_deployed(tenant: Tenant) -> None:
    error = assert_error(tenant.agent.get("/api/route", {"lead": "x"}), 404, "no_model_deployed")
    assert "deploy one" in str(error["message"])


def test_route_sees_a_deploy_at_once_and_adds_no_query(tenant: Tenant, django_assert_num_queries: Any) -> None:
    first = deployed(tenant.organization)
    assert tenant.agent.get("/api/route", {"lead": "x"}).json()["registry_id"] == str(first.pk)
    with django_assert_num_queries(1):  # the key's own row; the routing table is cached
        tenant.agent.get("/api/route", {"lead": "x"})
    second = deployed(tenant.organization)
    assert tenant.agent.get("/api/route", {"lead": "x"}).json()["registry_id"] == str(second.pk)


# --- Models and leaderboard -------------------------------------------------------------------------


def test_models_lists_the_organizations_and_the_global_models(tenant: Tenant, other: Tenant) -> None:
    mine = deployed(tenant.organization)
    ready = RegisteredModelFactory.create(organization=tenant.organization)
    shared = RegisteredModelFactory.create(organization=None)
    RegisteredModelFactory.create(organization=other.organization)
    body = tenant.agent.get("/training/models").json()
    assert body["total"] == 3
    assert {m["id"] for m in body["models"]} == {str(mine.pk), str(ready.pk), str(shared.pk)}
    row = next(m for m in body["models"] if m["id"] == str(mine.pk))
    for name in ("id", "model_id", "model_version", "status", "traffic_percentage", "reply_rate", "close_rate"):
        assert name in row
    assert (row["status"], row["traffic_percentage"]) == ("deployed", 100.0)


def test_models_filter_by_status(tenant: Tenant) -> None:
    mine = deployed(tenant.organization)
    RegisteredModelFactory.create(organization=tenant.organization)
    body = tenant.agent.get("/training/models", {"status": "deployed"}).json()
    assert [m["id"] for m in body["models"]] == [str(mine.pk)]
    assert_error(tenant.agent.get("/training/models", {"status": "sleeping"}), 400)


def test_models_by_staff_name_any_organization_or_the_global_pool(tenant: Tenant, staff: APIClient) -> None:
    mine = RegisteredModelFactory.create(organization=tenant.organization)
    shared = RegisteredModelFactory.create(organization=None)
    global_ids = {m["id"] for m in staff.get("/training/models").json()["models"]}
    query = {"organization_id": str(tenant.organization.pk)}
    org_ids = {m["id"] for m in staff.get("/training/models", query).json()["models"]}
    assert global_ids == {str(shared.pk)}
    assert org_ids == {str(mine.pk), str(shared.pk)}


def test_leaderboard_ranks_models_with_enough_samples(tenant: Tenant) -> None:
    good = RegisteredModelFactory.create(organization=tenant.organization)
    fair = RegisteredModelFactory.create(organization=tenant.organization)
    young = RegisteredModelFactory.create(organization=tenant.organization)
    model_performance_update(model=good, messages_sent=200, replies=30, deals_closed=6, revenue=150000)
    model_performance_update(model=fair, messages_sent=150, replies=20, deals_closed=2, revenue=20000)
    model_performance_update(model=young, messages_sent=10, replies=9, deals_closed=5)
    body = tenant.agent.get("/training/leaderboard", {"min_samples": 100}).json()
    assert body["total"] == 2
    first = body["leaderboard"][0]
    assert first["model_version"] == good.model_version
    assert (first["close_rate"], first["reply_rate"], first["total_revenue"]) == (0.03, 0.15, 150000.0)
    for name in ("model_id", "model_version", "close_rate", "reply_rate", "total_revenue", "close_rate_rank"):
        assert name in first
    assert [row["model_version"] for row in body["leaderboard"]] == [good.model_version, fair.model_version]


def test_leaderboard_defaults_to_the_seeds_100_samples(tenant: Tenant) -> None:
    model = RegisteredModelFactory.create(organization=tenant.organization)
    model_performance_update(model=model, messages_sent=99)
    assert tenant.agent.get("/training/leaderboard").json()["total"] == 0
    assert tenant.agent.get("/training/leaderboard", {"min_samples": 0}).json()["total"] == 1
