"""POST /training/deploy/{id} and POST /training/promote-winner: the experiments' endpoints."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from experiments.models import Experiment
from registry.models import ModelEvent, RegisteredModel
from registry.services import model_deploy
from tests.api_clients import Tenant, assert_error, staff_client
from tests.experiments.experiment_data import in_first_week, send, start
from tests.registry.factories import RegisteredModelFactory, pool_traffic

pytestmark = pytest.mark.django_db


def deployed(organization: Any, **fields: Any) -> RegisteredModel:
    model = RegisteredModelFactory.create(organization=organization, **fields)
    return model_deploy(model=model)


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


def test_deploying_a_new_variant_beside_the_control_starts_its_experiment(tenant: Tenant) -> None:
    control = deployed(tenant.organization)
    variant = RegisteredModelFactory.create(organization=tenant.organization)
    body = {"traffic_percentage": 20.0, "ab_test_group": "variant_a"}

    response = tenant.ops.post(f"/training/deploy/{variant.pk}", body, format="json")

    assert (response.status_code, response.json()["ab_test_group"]) == (200, "variant_a")
    experiment = Experiment.objects.get()
    assert (experiment.control, experiment.variant, experiment.organization) == (control, variant, tenant.organization)


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
