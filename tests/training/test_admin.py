"""The training runs' admin: list, run page, cancel action and "Run training cycle now"."""

import datetime
from typing import Any

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from flywheel import formatting
from flywheel.models import Organization
from tests.factories import OrganizationFactory, UserFactory
from tests.training.factories import TrainingRunFactory
from tests.training.fake_openai import FakeOpenAI
from tests.training.helpers import drive, drive_to, make_labels
from training.models import TrainingRun
from training.services import training_run_start

pytestmark = pytest.mark.django_db

Status = TrainingRun.Status
CHANGELIST = "admin:training_trainingrun_changelist"
RUN_NOW = "admin:training_trainingrun_run_now"


@pytest.fixture(autouse=True)
def _training_settings(settings: Any) -> None:
    settings.TRAINING_MIN_EXAMPLES = 10
    settings.FINE_TUNING_PROVIDER = "local"


@pytest.fixture
def organization() -> Organization:
    organization = OrganizationFactory.create(slug="acme", name="Acme")
    make_labels(organization)
    return organization


def staff_client(client: Client, *permissions: str) -> Client:
    user = UserFactory.create(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    client.force_login(user)
    return client


@pytest.fixture
def operator(client: Client) -> Client:
    """Staff who may see, start and cancel runs."""
    return staff_client(client, "view_trainingrun", "run_training")


@pytest.fixture
def viewer(client: Client) -> Client:
    """Staff who may only look."""
    return staff_client(client, "view_trainingrun")


def start(organization: Organization | None) -> TrainingRun:
    return training_run_start(organization=organization, triggered_by="command", actor=None)


# --- List and run page ---------------------------------------------------------------------------


def test_the_list_shows_status_timings_counts_cost_and_model(operator: Client, organization: Organization) -> None:
    run = drive(start(organization))
    page = operator.get(reverse(CHANGELIST)).content.decode()
    assert "Run training cycle now" in page
    for text in ("Succeeded", "Acme", "v2.1.0", "12", formatting.money(run.estimated_cost)):
        assert text in page
    assert reverse("admin:registry_registeredmodel_change", args=[run.registered_model_id]) in page


def test_the_run_page_shows_events_measured_metrics_and_the_test_output_and_no_loss_on_local(
    operator: Client, organization: Organization
) -> None:
    run = drive(start(organization))
    page = operator.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "The job has successfully completed" in page
    assert run.checkpoints == [] and "<th>train loss</th>" not in page
    assert "None: the local provider trains no network, so it has no loss to report." in page
    assert "<td>training_examples</td><td>12</td>" in page  # a measured figure, not a made-up one
    assert run.test_output.splitlines()[0] in page


def test_the_run_page_of_a_provider_that_measures_losses_shows_its_checkpoints(operator: Client) -> None:
    checkpoint = {"step": 12, "train_loss": 0.8123, "valid_loss": None, "train_mean_token_accuracy": 0.61}
    run = TrainingRunFactory.create(provider="openai", checkpoints=[checkpoint])
    page = operator.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "<th>train loss</th>" in page and "<td>0.8123</td>" in page and "<td>12</td>" in page


def test_the_list_shows_when_an_openai_base_model_shuts_down(
    operator: Client, organization: Organization, fake_openai: FakeOpenAI
) -> None:
    fake_openai.add_model("gpt-4o-2024-08-06", shutdown_date=datetime.date(2027, 1, 14))
    TrainingRunFactory.create(organization=organization, provider="openai", base_model="gpt-4o-2024-08-06")
    TrainingRunFactory.create(
        provider="openai", base_model="gpt-4o-2024-08-06", status=Status.FAILED, finished_at=timezone.now()
    )
    assert "2027-01-14" in operator.get(reverse(CHANGELIST)).content.decode()
    assert "2027-01-14" in operator.get(reverse(CHANGELIST)).content.decode()
    assert len(fake_openai.requests_to("models.retrieve")) == 1  # cached across rows and pages


def test_an_unreachable_provider_does_not_break_the_list(
    operator: Client, organization: Organization, fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.OPENAI_MAX_RETRIES = 0
    fake_openai.fail_next("models.retrieve", 500)
    TrainingRunFactory.create(organization=organization, provider="openai", base_model="gpt-4o-2024-08-06")
    response = operator.get(reverse(CHANGELIST))
    assert response.status_code == 200 and "unknown" in response.content.decode()


def test_runs_cannot_be_added_edited_or_deleted_here(operator: Client, organization: Organization) -> None:
    run = start(organization)
    assert operator.get(reverse("admin:training_trainingrun_add")).status_code == 403
    assert operator.get(reverse("admin:training_trainingrun_delete", args=[run.pk])).status_code == 403
    page = operator.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert 'name="_save"' not in page


# --- Cancelling ----------------------------------------------------------------------------------


def cancel(client: Client, runs: list[TrainingRun], **extra: str) -> Any:
    data = {"action": "cancel_runs", helpers.ACTION_CHECKBOX_NAME: [str(run.pk) for run in runs], **extra}
    return client.post(reverse(CHANGELIST), data, follow=True)


def test_cancelling_asks_for_confirmation_first(operator: Client, organization: Organization) -> None:
    run = drive_to(start(organization), Status.TRAINING)
    response = cancel(operator, [run])
    assert response.status_code == 200 and "Yes, cancel them" in response.content.decode()
    assert run.provider_job_id in response.content.decode()
    run.refresh_from_db()
    assert run.status == Status.TRAINING


def test_cancelling_cancels_the_run_and_its_job(operator: Client, organization: Organization) -> None:
    run = drive_to(start(organization), Status.TRAINING)
    response = cancel(operator, [run], confirm="yes", reason="wrong pool")
    assert "1 training run(s) cancelled." in response.content.decode()
    run.refresh_from_db()
    assert run.status == Status.CANCELLED and run.error.endswith(": wrong pool")
    assert run.provider_status == "" and run.finished_at is not None


def test_cancelling_an_ended_run_is_an_error_message_not_a_500(operator: Client, organization: Organization) -> None:
    run = drive(start(organization))
    page = cancel(operator, [run], confirm="yes").content.decode()
    assert "only an active run can be cancelled" in page and "0 training run(s) cancelled." in page


def test_cancelling_needs_the_run_training_permission(viewer: Client, organization: Organization) -> None:
    run = start(organization)
    page = viewer.get(reverse(CHANGELIST)).content.decode()
    assert "cancel_runs" not in page and "Run training cycle now" not in page
    cancel(viewer, [run], confirm="yes")
    run.refresh_from_db()
    assert run.status == Status.PENDING


# --- Run training cycle now ----------------------------------------------------------------------


def test_run_now_shows_the_form_then_what_would_train(operator: Client, organization: Organization) -> None:
    form = operator.get(reverse(RUN_NOW) + f"?organization={organization.pk}")
    assert form.status_code == 200 and "Global model (every organization)" in form.content.decode()
    review = operator.post(reverse(RUN_NOW), {"organization": organization.pk, "min_quality_score": "0.6"} | DEFAULTS)
    page = review.content.decode()
    assert "Yes, start training" in page and "12 positive examples" in page and "at least 10" in page
    assert not TrainingRun.objects.exists()


DEFAULTS = {"method": "sft", "validation_percent": "0", "ab_test_percentage": "10"}


def test_run_now_starts_the_run_on_confirmation(
    operator: Client, organization: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    data = {"organization": organization.pk, "min_quality_score": "0.6", "confirm": "yes"} | DEFAULTS
    with django_capture_on_commit_callbacks() as enqueued:
        response = operator.post(reverse(RUN_NOW), data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:training_trainingrun_change", args=[run.pk])
    assert (run.organization, run.triggered_by, run.status) == (organization, TrainingRun.Trigger.ADMIN, Status.PENDING)
    assert run.actor_user is not None and run.actor_label == run.actor_user.get_username()
    assert len(enqueued) == 1


def test_run_now_for_the_global_pool(operator: Client, organization: Organization) -> None:
    operator.post(reverse(RUN_NOW), {"organization": "", "min_quality_score": "0.6", "confirm": "yes"} | DEFAULTS)
    assert TrainingRun.objects.get().pool == "global"


def test_run_now_reports_an_active_run_as_an_error_message(operator: Client, organization: Organization) -> None:
    start(organization)
    data = {"organization": organization.pk, "min_quality_score": "0.6", "confirm": "yes"} | DEFAULTS
    response = operator.post(reverse(RUN_NOW), data, follow=True)
    assert response.status_code == 200
    assert "already pending" in response.content.decode()
    assert TrainingRun.objects.count() == 1


def test_run_now_shows_form_errors(operator: Client, organization: Organization) -> None:
    response = operator.post(reverse(RUN_NOW), {"min_quality_score": "3", "confirm": "yes"} | DEFAULTS)
    assert response.status_code == 200 and "Ensure this value is less than or equal to 1" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_run_now_needs_the_run_training_permission(viewer: Client, organization: Organization) -> None:
    assert viewer.get(reverse(RUN_NOW)).status_code == 403
    data = {"organization": organization.pk, "min_quality_score": "0.6", "confirm": "yes"} | DEFAULTS
    assert viewer.post(reverse(RUN_NOW), data).status_code == 403
    assert not TrainingRun.objects.exists()
