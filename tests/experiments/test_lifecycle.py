"""An A/B test's lifecycle: it ends promoted, lost or stopped with a reason, and traffic changes respect it.

Every traffic change that touches an arm of a running test is refused with a message that says
how to stop it, or, overridden with a reason, stops the test in the same step. Driven through the
API, the admin and the commands, as a person would.
"""

from io import StringIO

import pytest
from django.contrib.admin import helpers
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse

from experiments.models import Experiment
from experiments.services import experiment_stop, traffic_change
from flywheel.errors import ApplicationError
from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services import model_archive, model_deploy
from tests.api_clients import Tenant, assert_error, make_tenant, staff_client
from tests.experiments.conftest import staff_client as admin_client
from tests.experiments.experiment_data import in_first_week, send, start
from tests.registry.factories import RegisteredModelFactory, assert_pool_invariant, pool_traffic

pytestmark = pytest.mark.django_db
MODELS = "admin:registry_registeredmodel_changelist"
EXPERIMENTS = "admin:experiments_experiment_changelist"


@pytest.fixture
def running(tenant: Tenant) -> Experiment:
    """A 90/10 test in the tenant's pool, v1.0.0 against v1.1.0."""
    control = RegisteredModelFactory.create(organization=tenant.organization, model_version="v1.0.0")
    model_deploy(model=control)
    variant = RegisteredModelFactory.create(organization=tenant.organization, model_version="v1.1.0")
    return start(variant, look=1, share=10.0)


def groups(organization: Organization) -> dict[str, tuple[str, str]]:
    rows = RegisteredModel.objects.in_pool(organization.pk)
    return {
        version: (status, group)
        for version, status, group in rows.values_list("model_version", "status", "ab_test_group")
    }


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- Stopping -----------------------------------------------------------------------------------


def test_stopping_through_the_api_archives_the_variant_and_records_who_and_why(
    tenant: Tenant, running: Experiment
) -> None:
    response = tenant.ops.post(f"/api/experiments/{running.pk}/stop", {"reason": "wrong prompt"}, format="json")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["outcome"], response.json()["end_reason"]) == (
        "stopped",
        "stopped",
        "wrong prompt",
    )
    running.refresh_from_db()
    assert running.ended_by.startswith("api-key:")
    assert pool_traffic(tenant.organization) == {"v1.0.0": 100.0}
    assert groups(tenant.organization) == {"v1.0.0": ("deployed", "control"), "v1.1.0": ("archived", "")}
    ended = ModelEvent.objects.filter(action=ModelEvent.Action.TEST_ENDED)
    assert sorted(ended.values_list("reason", flat=True)) == ["A/B test stopped: wrong prompt"] * 2


def test_stopping_a_stopped_test_answers_409_with_its_state_and_changes_nothing(
    tenant: Tenant, running: Experiment
) -> None:
    tenant.ops.post(f"/api/experiments/{running.pk}/stop", {"reason": "first"}, format="json")

    response = tenant.ops.post(f"/api/experiments/{running.pk}/stop", {"reason": "again"}, format="json")

    error = assert_error(response, 409, "conflict")
    assert error["details"] == {"status": "stopped", "outcome": "stopped", "end_reason": "first"}


def test_the_stop_endpoint_needs_a_reason_an_ops_key_and_the_callers_own_organization(
    tenant: Tenant, running: Experiment
) -> None:
    path = f"/api/experiments/{running.pk}/stop"
    assert_error(tenant.ops.post(path, {"reason": ""}, format="json"), 400)
    assert_error(tenant.agent.post(path, {"reason": "x"}, format="json"), 403)
    assert_error(make_tenant().ops.post(path, {"reason": "x"}, format="json"), 404)
    assert_error(tenant.ops.post("/api/experiments/not-an-id/stop", {"reason": "x"}, format="json"), 404)
    assert Experiment.objects.get().status == "running"


def test_staff_with_the_deploy_permission_stop_any_pools_test(running: Experiment) -> None:
    client = staff_client("registry.deploy_model")
    assert client.post(f"/api/experiments/{running.pk}/stop", {"reason": "ops"}, format="json").status_code == 200


def test_the_admin_stop_action_asks_for_a_reason_on_its_confirmation_page_then_stops(
    client: Client, running: Experiment
) -> None:
    deployer = admin_client(client, "view_experiment", "deploy_model")
    data = {"action": "stop_test", helpers.ACTION_CHECKBOX_NAME: [str(running.pk)]}

    page = deployer.post(reverse(EXPERIMENTS), data).content.decode()
    assert "Reason (required" in page and "Archived" in page
    assert Experiment.objects.get().status == "running"

    deployer.post(reverse(EXPERIMENTS), {**data, "apply": "yes", "reason": "bad data"}, follow=True)
    running.refresh_from_db()
    assert (running.status, running.end_reason) == ("stopped", "bad data")


def test_staff_without_the_deploy_permission_cannot_stop_in_the_admin(client: Client, running: Experiment) -> None:
    viewer = admin_client(client, "view_experiment")
    data = {"action": "stop_test", helpers.ACTION_CHECKBOX_NAME: [str(running.pk)], "apply": "yes", "reason": "x"}
    viewer.post(reverse(EXPERIMENTS), data, follow=True)
    assert Experiment.objects.get().status == "running"


def test_the_stop_command_stops_by_pool_with_a_reason_and_refuses_a_second_stop(
    tenant: Tenant, running: Experiment
) -> None:
    output = run("stop_experiment", "--organization", tenant.organization.slug, "--reason", "done")
    assert "Stopped the A/B test" in output
    running.refresh_from_db()
    assert (running.status, running.end_reason, running.ended_by) == ("stopped", "done", "system")
    with pytest.raises(CommandError, match="already ended"):
        run("stop_experiment", str(running.pk), "--reason", "again")


def test_a_stop_without_a_reason_is_refused(running: Experiment) -> None:
    with pytest.raises(ApplicationError, match="needs a reason"):
        experiment_stop(experiment=running, actor=None, reason="  ")


# --- Ending by decision ---------------------------------------------------------------------------


def test_a_promoted_test_ends_promoted_with_its_reasons_and_the_variant_as_the_only_control(tenant: Tenant) -> None:
    control = model_deploy(
        model=RegisteredModelFactory.create(organization=tenant.organization, model_version="v1.0.0")
    )
    variant = RegisteredModelFactory.create(organization=tenant.organization, model_version="v1.1.0")
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment))
    send(variant, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)

    answer = tenant.ops.post("/training/promote-winner", {}, format="json").json()

    experiment.refresh_from_db()
    assert (answer["action"], experiment.outcome, experiment.winner) == ("promoted", "promoted", variant)
    assert experiment.end_reason and experiment.ended_by.startswith("api-key:")
    assert groups(tenant.organization) == {"v1.0.0": ("archived", ""), "v1.1.0": ("deployed", "control")}


def test_a_lost_test_ends_lost_with_the_control_as_winner(tenant: Tenant) -> None:
    control = model_deploy(
        model=RegisteredModelFactory.create(organization=tenant.organization, model_version="v1.0.0")
    )
    variant = RegisteredModelFactory.create(organization=tenant.organization, model_version="v1.1.0")
    experiment = start(variant, look=8)
    send(control, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)
    send(variant, 40, at=in_first_week(experiment))

    answer = tenant.ops.post("/training/promote-winner", {}, format="json").json()

    experiment.refresh_from_db()
    assert (answer["action"], experiment.outcome, experiment.winner) == ("rolled_back", "lost", control)
    assert groups(tenant.organization) == {"v1.0.0": ("deployed", "control"), "v1.1.0": ("archived", "")}


# --- Refused and overridden traffic changes ----------------------------------------------------


def test_deploying_the_variant_at_100_through_the_api_is_refused_with_how_to_stop_the_test(
    tenant: Tenant, running: Experiment
) -> None:
    response = tenant.ops.post(f"/training/deploy/{running.variant_id}", {"traffic_percentage": 100}, format="json")

    error = assert_error(response, 409, "experiment_running")
    assert f"/api/experiments/{running.pk}/stop" in error["message"]
    assert "stop_experiment" in error["message"]
    assert pool_traffic(tenant.organization) == {"v1.0.0": 90.0, "v1.1.0": 10.0}
    assert Experiment.objects.get().status == "running"


def test_an_api_override_without_a_reason_is_a_400(tenant: Tenant, running: Experiment) -> None:
    body = {"traffic_percentage": 100, "override_experiment": True}
    assert_error(tenant.ops.post(f"/training/deploy/{running.variant_id}", body, format="json"), 400)
    assert Experiment.objects.get().status == "running"


def test_an_api_override_stops_the_test_and_deploys_in_one_step(tenant: Tenant, running: Experiment) -> None:
    body = {"traffic_percentage": 100, "override_experiment": True, "reason": "ship it"}

    response = tenant.ops.post(f"/training/deploy/{running.variant_id}", body, format="json")

    assert response.status_code == 200
    running.refresh_from_db()
    assert running.status == "stopped"
    assert running.end_reason.startswith("overridden by api-key:") and running.end_reason.endswith(": ship it")
    assert groups(tenant.organization) == {"v1.0.0": ("archived", ""), "v1.1.0": ("deployed", "control")}
    assert_pool_invariant(tenant.organization)


def test_a_new_test_beside_a_running_one_is_refused_with_how_to_stop_it(tenant: Tenant, running: Experiment) -> None:
    other = RegisteredModelFactory.create(organization=tenant.organization, model_version="v1.2.0")
    body = {"traffic_percentage": 10, "ab_test_group": "variant_a"}

    error = assert_error(tenant.ops.post(f"/training/deploy/{other.pk}", body, format="json"), 409)

    assert "stop" in error["message"] and str(running.pk) in error["message"]
    assert pool_traffic(tenant.organization) == {"v1.0.0": 90.0, "v1.1.0": 10.0}


@pytest.mark.parametrize(
    ("action", "target", "extra"),
    [
        ("archive", "variant", {}),
        ("archive", "control", {}),
        ("set_traffic", "variant", {"traffic_percentage": "50", "previewed": "50"}),
        ("deploy_at_full_traffic", "variant", {}),
        ("rollback", "variant", {}),
    ],
)
def test_an_admin_traffic_action_on_an_arm_is_refused_then_overridden_from_its_confirmation_page(
    client: Client, tenant: Tenant, running: Experiment, action: str, target: str, extra: dict[str, str]
) -> None:
    deployer = admin_client(client, "view_registeredmodel", "deploy_model")
    model = running.variant if target == "variant" else running.control
    data = {"action": action, helpers.ACTION_CHECKBOX_NAME: [str(model.pk)]}

    first = {**data, **extra, "confirm_step": "1", "previewed": ""} if extra else data
    page = deployer.post(reverse(MODELS), first).content.decode()
    assert "is running in this pool" in page and "override" in page
    assert pool_traffic(tenant.organization) == {"v1.0.0": 90.0, "v1.1.0": 10.0}

    confirm = {**data, **extra, "confirm_step": "1", "reason": "incident", "override_experiment": "on"}
    if "previewed" not in confirm:
        confirm["previewed"] = ""
    preview = deployer.post(reverse(MODELS), confirm).content.decode()
    assert "Yes, move the traffic" in preview and "A/B test ended" in preview
    assert Experiment.objects.get().status == "running"

    deployer.post(reverse(MODELS), {**confirm, "previewed_override": "True", "apply": "yes"}, follow=True)
    running.refresh_from_db()
    assert running.status == "stopped"
    assert running.end_reason.startswith("overridden by ") and running.end_reason.endswith(": incident")
    assert_pool_invariant(tenant.organization)
    assert not RegisteredModel.objects.filter(ab_test_group__in=["variant_a", "variant_b"]).exists()


def test_the_deploy_command_is_refused_then_overrides_with_a_reason(tenant: Tenant, running: Experiment) -> None:
    with pytest.raises(CommandError, match="stop_experiment"):
        run("deploy_model", str(running.variant_id))
    assert Experiment.objects.get().status == "running"

    run("deploy_model", str(running.variant_id), "--override", "--reason", "hotfix")

    running.refresh_from_db()
    assert (running.status, running.end_reason) == ("stopped", "overridden by system: hotfix")
    assert pool_traffic(tenant.organization) == {"v1.1.0": 100.0}


def test_the_rollback_command_is_refused_then_overrides_with_a_reason(tenant: Tenant, running: Experiment) -> None:
    slug = tenant.organization.slug
    with pytest.raises(CommandError, match="is running in this pool"):
        run("rollback_model", "--organization", slug)
    with pytest.raises(CommandError, match="needs a reason"):
        run("rollback_model", "--organization", slug, "--override")

    run("rollback_model", "--organization", slug, "--override", "--reason", "undo")

    assert Experiment.objects.get().status == "stopped"
    assert groups(tenant.organization) == {"v1.0.0": ("deployed", "control"), "v1.1.0": ("ready", "")}


def test_archiving_a_ready_model_beside_a_running_test_is_not_refused(tenant: Tenant, running: Experiment) -> None:
    spare = RegisteredModelFactory.create(organization=tenant.organization, model_version="v0.9.0")
    run("stop_experiment", str(running.pk), "--dry-run", "--reason", "look")  # a dry run changes nothing
    traffic_change(change=lambda: model_archive(model=spare), actor=None)

    assert Experiment.objects.get().status == "running"


# --- ab_test_group ------------------------------------------------------------------------------


def test_a_model_never_deployed_has_no_group(organization: Organization) -> None:
    assert RegisteredModelFactory.create(organization=organization).ab_test_group == ""


def test_a_plain_split_has_one_control_and_no_variant_label(organization: Organization) -> None:
    first = model_deploy(model=RegisteredModelFactory.create(organization=organization, model_version="v1.0.0"))
    model_deploy(
        model=RegisteredModelFactory.create(organization=organization, model_version="v2.0.0"),
        traffic_percentage=60,
        ab_test_group="variant_a",
    )

    assert groups(organization) == {"v1.0.0": ("deployed", "control"), "v2.0.0": ("deployed", "")}
    model_deploy(model=first, traffic_percentage=100)
    assert groups(organization) == {"v1.0.0": ("deployed", "control"), "v2.0.0": ("archived", "")}


def test_the_database_refuses_a_second_control_and_a_group_on_a_model_out_of_the_pool(
    organization: Organization,
) -> None:
    model_deploy(model=RegisteredModelFactory.create(organization=organization))
    other = RegisteredModelFactory.create(organization=organization)
    with pytest.raises(IntegrityError), transaction.atomic():
        RegisteredModel.objects.filter(pk=other.pk).update(status="deployed", ab_test_group="control")
    with pytest.raises(IntegrityError), transaction.atomic():
        RegisteredModel.objects.filter(pk=other.pk).update(ab_test_group="variant_a")


def test_the_global_pool_has_one_control_too() -> None:
    model_deploy(model=RegisteredModelFactory.create())
    other = RegisteredModelFactory.create()
    with pytest.raises(IntegrityError), transaction.atomic():
        RegisteredModel.objects.filter(pk=other.pk).update(status="deployed", ab_test_group="control")
