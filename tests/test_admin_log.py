"""Every admin action leaves its story in the admin's log: one entry per object changed, never for a refusal.

Each test acts through the admin with Django's test client, as a person with the permissions the
action needs, then reads ``LogEntry``: the object (content type and id), the acting user, the
flag and a readable message with the reason given. "Recent actions" on the index shows them.
"""

from typing import Any

import pytest
from django.contrib.admin import helpers
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from experiments.models import Experiment
from flywheel.models import Organization
from registry.models import RegisteredModel
from registry.services import model_start_ab_test
from tests.experiments.experiment_data import in_first_week, send, start
from tests.factories import OrganizationFactory, UserFactory
from tests.registry.factories import RegisteredModelFactory
from tests.training.helpers import drive_to, make_labels
from training.models import TrainingRun
from training.services import training_run_start

pytestmark = pytest.mark.django_db

REGISTRY = reverse("admin:registry_registeredmodel_changelist")
EXPERIMENTS = reverse("admin:experiments_experiment_changelist")
RUNS = reverse("admin:training_trainingrun_changelist")
OPS = ("view_registeredmodel", "change_registeredmodel", "deploy_model", "view_experiment")


@pytest.fixture
def organization() -> Organization:
    return OrganizationFactory.create(name="Acme", slug="acme")


def signed_in(*codenames: str) -> tuple[Client, Any]:
    user = UserFactory.create(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client, user


def logged(obj: Model) -> list[tuple[int, str, str]]:
    """The log's entries about ``obj``, oldest first: flag, message and the acting user's name."""
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
    ).order_by("action_time", "id")
    return list(entries.values_list("action_flag", "change_message", "user__username"))


def apply(client: Client, url: str, action: str, *objects: Model, **fields: Any) -> Any:
    """Run ``action`` on ``objects`` from a list, its confirmation included."""
    data = {"action": action, "confirm_step": "1", "apply": "yes", "confirm": "yes"}
    data[helpers.ACTION_CHECKBOX_NAME] = [str(obj.pk) for obj in objects]  # type: ignore[assignment]
    return client.post(url, {**data, **fields}, follow=True)


# --- The registry's traffic actions ---------------------------------------------------------------


def test_deploying_logs_the_deployed_model_and_the_archived_one_with_the_reason(
    control: RegisteredModel, candidate: RegisteredModel
) -> None:
    client, user = signed_in(*OPS)
    apply(client, REGISTRY, "deploy_at_full_traffic", candidate, reason="weekly model")
    name = user.get_username()
    assert logged(candidate) == [
        (CHANGE, "Deployed: ready → deployed, traffic 0 % → 100 % (reason: weekly model)", name)
    ]
    [(flag, message, actor)] = logged(control)
    assert (flag, actor) == (CHANGE, name)
    assert message.startswith("Archived: deployed → archived, traffic 100 % → 0 %")


def test_setting_traffic_archiving_rolling_back_and_the_baseline_are_logged(
    control: RegisteredModel, candidate: RegisteredModel
) -> None:
    client, user = signed_in(*OPS)
    model_start_ab_test(variant=candidate, variant_traffic=10)
    apply(client, REGISTRY, "set_traffic", candidate, traffic_percentage="20", previewed="20", reason="more")
    assert logged(candidate)[-1][1] == "Traffic changed: traffic 10 % → 20 % (reason: more)"
    apply(client, REGISTRY, "rollback", candidate, reason="replies dropped")
    assert logged(candidate)[-1][1].startswith("Rolled back: traffic 20 % → 10 % (reason: replies dropped; undoes")
    apply(client, REGISTRY, "archive", candidate, reason="lost")
    assert logged(candidate)[-1][1] == "Archived: deployed → archived, traffic 10 % → 0 % (reason: lost)"
    client.post(REGISTRY, {"action": "set_baseline", helpers.ACTION_CHECKBOX_NAME: [str(control.pk)]})
    assert logged(control)[-1][1].startswith("Baseline set")
    assert {actor for _, _, actor in logged(candidate) + logged(control)} == {user.get_username()}


def test_a_refused_or_previewed_action_writes_nothing(organization: Organization, candidate: RegisteredModel) -> None:
    failed = RegisteredModelFactory.create(organization=organization, status=RegisteredModel.Status.FAILED)
    client, _ = signed_in(*OPS)
    apply(client, REGISTRY, "deploy_at_full_traffic", failed, reason="try")  # refused: it has failed
    client.post(REGISTRY, {"action": "deploy_at_full_traffic", helpers.ACTION_CHECKBOX_NAME: [str(candidate.pk)]})
    viewer, _ = signed_in("view_registeredmodel", "change_registeredmodel")
    apply(viewer, REGISTRY, "deploy_at_full_traffic", candidate, reason="no permission")
    assert LogEntry.objects.count() == 0


# --- Experiments --------------------------------------------------------------------------------


def test_starting_an_ab_test_logs_the_new_experiment_and_the_variant(
    control: RegisteredModel, candidate: RegisteredModel
) -> None:
    client, user = signed_in(*OPS)
    apply(client, REGISTRY, "start_ab_test", candidate, traffic_percentage="10", previewed="10", reason="try v2")
    experiment = Experiment.objects.get()
    assert logged(experiment) == [(ADDITION, "Started: v2.0.0 at 10 % against v1.0.0", user.get_username())]
    assert logged(candidate)[0][1].startswith("Deployed: ready → deployed, traffic 0 % → 10 % (reason: try v2")
    assert logged(control)[0][1].startswith("Traffic changed: traffic 100 % → 90 % (reason: try v2")


def test_stopping_a_test_logs_the_experiment_and_the_archived_variant(
    control: RegisteredModel, candidate: RegisteredModel
) -> None:
    experiment = start(candidate, look=1)
    client, user = signed_in(*OPS)
    apply(client, EXPERIMENTS, "stop_test", experiment, reason="broken tracking")
    assert logged(experiment) == [(CHANGE, "Stopped the A/B test (reason: broken tracking)", user.get_username())]
    assert any(message.startswith("Archived: deployed → archived") for _, message, _ in logged(candidate))


def test_promoting_the_winner_logs_the_decision_and_each_model_moved(
    control: RegisteredModel, candidate: RegisteredModel
) -> None:
    experiment = start(candidate, look=4)
    send(control, 40, at=in_first_week(experiment), replies=4)
    send(candidate, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)
    client, user = signed_in(*OPS)
    apply(client, EXPERIMENTS, "promote_winner", experiment)
    assert logged(experiment) == [(CHANGE, "Evaluated now and applied the decision: promoted", user.get_username())]
    assert any(message.startswith("Promoted") for _, message, _ in logged(candidate))
    assert any("archived" in message for _, message, _ in logged(control))


def test_a_refused_stop_writes_nothing(control: RegisteredModel, candidate: RegisteredModel) -> None:
    experiment = start(candidate, look=1)
    client, _ = signed_in("view_experiment")
    apply(client, EXPERIMENTS, "stop_test", experiment, reason="no permission")
    apply(signed_in(*OPS)[0], EXPERIMENTS, "stop_test", experiment)  # no reason: the page asks again
    assert LogEntry.objects.count() == 0


# --- Training runs ------------------------------------------------------------------------------


def test_running_a_training_cycle_now_and_cancelling_it_are_logged(settings: Any, organization: Organization) -> None:
    settings.TRAINING_MIN_EXAMPLES = 10
    settings.FINE_TUNING_PROVIDER = "local"
    make_labels(organization)
    client, user = signed_in("view_trainingrun", "run_training")
    data = {"organization": organization.pk, "min_quality_score": "0.6", "method": "sft", "confirm": "yes"}
    client.post(
        reverse("admin:training_trainingrun_run_now"), data | {"validation_percent": "0", "ab_test_percentage": "10"}
    )
    run = TrainingRun.objects.get()
    apply(client, RUNS, "cancel_runs", run, reason="wrong pool")
    name = user.get_username()
    assert logged(run) == [
        (ADDITION, "Started a training run for Acme: the next version, Supervised (SFT), quality >= 0.6", name),
        (CHANGE, "Cancelled (reason: wrong pool)", name),
    ]


def test_cancelling_a_finished_run_writes_nothing(settings: Any, organization: Organization) -> None:
    settings.TRAINING_MIN_EXAMPLES = 10
    settings.FINE_TUNING_PROVIDER = "local"
    make_labels(organization)
    run = training_run_start(organization=organization, triggered_by="command", actor=None)
    run = drive_to(run, TrainingRun.Status.SUCCEEDED)
    client, _ = signed_in("view_trainingrun", "run_training")
    apply(client, RUNS, "cancel_runs", run, reason="too late")
    assert logged(run) == []


# --- Where the story shows ------------------------------------------------------------------------


def test_the_index_lists_the_actions_under_recent_actions(control: RegisteredModel, candidate: RegisteredModel) -> None:
    client, _ = signed_in(*OPS)
    apply(client, REGISTRY, "deploy_at_full_traffic", candidate, reason="weekly model")
    page = client.get(reverse("admin:index")).content.decode()
    recent = page[page.index('id="recent-actions-module"') :]
    assert str(candidate) in recent and str(control) in recent
    history = client.get(reverse("admin:registry_registeredmodel_history", args=[candidate.pk])).content.decode()
    assert "Deployed: ready → deployed, traffic 0 % → 100 % (reason: weekly model)" in history
