"""GET /api/route, GET /training/models, GET /training/leaderboard, POST /training/deploy/{id}."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from registry.models import ModelEvent, RegisteredModel
from registry.services import model_deploy, model_performance_update, model_start_ab_test
from tests.api.conftest import Tenant, assert_error, staff_client
from tests.registry.experiment_data import in_first_week, send, start
from tests.registry.factories import RegisteredModelFactory, pool_traffic

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


# --- Deploy -------------------------------------------------------------------------------------------


def test_deploy_with_the_seeds_body(tenant: Tenant) -> None:
    model = RegisteredModelFactory.create(organization=tenant.organization)
    body = {"traffic_percentage": 100.0, "ab_test_group": "control"}
    response = tenant.ops.post(f"/training/deploy/{model.pk}", body, format="json")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["traffic_percentage"]) == ("deployed", 100.0)
    assert pool_traffic(tenant.organization) == {model.model_version: 100.0}
    event = ModelEvent.objects.get(model=model, action=ModelEvent.Action.DEPLOYED)
    assert event.actor_label.startswith("api-key:")


def test_deploy_beside_a_deployed_model_splits_the_traffic(tenant: Tenant) -> None:
    control = deployed(tenant.organization)
    variant = RegisteredModelFactory.create(organization=tenant.organization)
    body = {"traffic_percentage": 10.0, "ab_test_group": "variant_a"}
    assert tenant.ops.post(f"/training/deploy/{variant.pk}", body, format="json").status_code == 200
    assert pool_traffic(tenant.organization) == {control.model_version: 90.0, variant.model_version: 10.0}


@pytest.mark.parametrize(
    "body",
    [
        {"traffic_percentage": 0},
        {"traffic_percentage": 100.5},
        {"traffic_percentage": -1},
        {"traffic_percentage": "NaN"},
        {"ab_test_group": "variant_z"},
    ],
)
def test_deploy_validates_its_body(tenant: Tenant, body: dict[str, Any]) -> None:
    model = RegisteredModelFactory.create(organization=tenant.organization)
    assert_error(tenant.ops.post(f"/training/deploy/{model.pk}", body, format="json"), 400)
    assert pool_traffic(tenant.organization) == {}


def test_deploying_a_failed_model_conflicts(tenant: Tenant) -> None:
    model = RegisteredModelFactory.create(organization=tenant.organization, status=RegisteredModel.Status.FAILED)
    assert_error(tenant.ops.post(f"/training/deploy/{model.pk}", {}, format="json"), 409, "conflict")


def test_an_agent_key_cannot_deploy(tenant: Tenant) -> None:
    model = RegisteredModelFactory.create(organization=tenant.organization)
    assert_error(tenant.agent.post(f"/training/deploy/{model.pk}", {}, format="json"), 403, "permission_denied")


def test_global_models_are_deployed_only_by_staff_with_the_permission(tenant: Tenant, staff: APIClient) -> None:
    shared = RegisteredModelFactory.create(organization=None)
    url = f"/training/deploy/{shared.pk}"
    assert_error(tenant.ops.post(url, {}, format="json"), 403, "permission_denied")
    assert_error(staff_client().post(url, {}, format="json"), 403, "permission_denied")
    assert staff.post(url, {}, format="json").status_code == 200
    assert pool_traffic(None) == {shared.model_version: 100.0}


@pytest.mark.parametrize("registry_id", ["not-a-uuid", "7b0c7a5e-0000-4000-8000-000000000000", "a/b"])
def test_deploying_an_unknown_model_answers_404(tenant: Tenant, registry_id: str) -> None:
    assert_error(tenant.ops.post(f"/training/deploy/{registry_id}", {}, format="json"), 404, "not_found")


# --- Promote the A/B test winner ----------------------------------------------------------------------


def ab_test(organization: Any) -> tuple[RegisteredModel, RegisteredModel]:
    """A running test in ``organization``'s pool whose variant clearly wins at its fourth look."""
    control = deployed(organization, model_version="v1.0.0")
    variant = RegisteredModelFactory.create(organization=organization, model_version="v1.1.0")
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment))
    send(variant, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)
    return control, variant


def test_promote_winner_answers_the_seeds_fields_and_promotes(tenant: Tenant) -> None:
    _, variant = ab_test(tenant.organization)
    response = tenant.ops.post("/training/promote-winner", {}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["winner"], body["winner_id"], body["action"]) == ("variant", str(variant.pk), "promoted")
    assert (body["control_score"], body["variant_score"]) == (0.0, 0.5)
    for name in ("improvement_percentage", "z", "boundary", "reasons", "experiment_id"):
        assert name in body
    assert pool_traffic(tenant.organization) == {"v1.1.0": 100.0}


def test_promote_winner_without_a_running_test_answers_404(tenant: Tenant) -> None:
    assert_error(tenant.ops.post("/training/promote-winner", {}, format="json"), 404, "not_found")


def test_an_undecided_test_moves_nothing(tenant: Tenant) -> None:
    deployed(tenant.organization, model_version="v1.0.0")
    variant = RegisteredModelFactory.create(organization=tenant.organization, model_version="v1.1.0")
    start(variant, look=1)
    body = tenant.ops.post("/training/promote-winner", {}, format="json").json()
    assert (body["action"], body["winner_id"]) == ("none", None)
    assert body["reasons"]
    assert pool_traffic(tenant.organization) == {"v1.0.0": 50.0, "v1.1.0": 50.0}


def test_the_global_test_is_promoted_only_by_permitted_staff(tenant: Tenant, staff: APIClient) -> None:
    ab_test(None)
    assert_error(staff_client().post("/training/promote-winner", {}, format="json"), 403)
    assert_error(tenant.ops.post("/training/promote-winner", {}, format="json"), 404)  # its own pool has none
    assert staff.post("/training/promote-winner", {}, format="json").json()["action"] == "promoted"
