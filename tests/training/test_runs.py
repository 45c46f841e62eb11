"""Training runs end to end: the local provider through django-q2, the openai client against the fake API."""

import datetime
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone
from django_q.models import Schedule

from experiments.models import Experiment
from flywheel.errors import Conflict
from flywheel.models import Organization
from registry.models import RegisteredModel
from registry.services import model_deploy, model_register
from tests.factories import OrganizationFactory, UserFactory
from tests.training.factories import TrainingRunFactory
from tests.training.fake_openai import FakeOpenAI
from tests.training.helpers import (
    drive,
    drive_to,
    failed_tasks,
    local_provider_files,
    make_labels,
    run_due_schedules,
)
from training import tasks
from training.datasets.storage import dataset_read, dataset_storage
from training.models import TrainingRun
from training.providers import get_provider
from training.schedules import poll_schedule_name
from training.selectors import next_version, training_run_result
from training.services import (
    schedule_weekly_training,
    training_run_advance,
    training_run_cancel,
    training_run_start,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("run_settings")]

Status = TrainingRun.Status
OnCommit = Callable[..., Any]


@pytest.fixture
def openai(settings: Any, fake_openai: FakeOpenAI) -> FakeOpenAI:
    settings.FINE_TUNING_PROVIDER = "openai"
    return fake_openai


def start(organization: Organization | None, **options: Any) -> TrainingRun:
    return training_run_start(organization=organization, triggered_by="command", actor=None, **options)


def models_of(run: TrainingRun) -> list[RegisteredModel]:
    return list(RegisteredModel.objects.filter(training_run_id=run.pk))


# --- The whole cycle -----------------------------------------------------------------------------


def test_a_whole_cycle_on_the_local_provider_runs_through_django_q(
    organization: Organization, django_capture_on_commit_callbacks: OnCommit
) -> None:
    make_labels(organization, positives=12)
    with django_capture_on_commit_callbacks(execute=True):
        run = start(organization)
    run.refresh_from_db()
    assert run.status == Status.TRAINING  # export, upload and job creation ran as chained tasks
    assert Schedule.objects.filter(name=poll_schedule_name(run.pk), func="training.tasks.poll_run").count() == 1

    for _ in range(3):  # validating → queued → running → succeeded, one state per poll
        with django_capture_on_commit_callbacks(execute=True):
            run_due_schedules()
    run.refresh_from_db()

    assert run.status == Status.SUCCEEDED, run.error
    assert failed_tasks() == []
    assert not Schedule.objects.filter(name=poll_schedule_name(run.pk)).exists()
    assert run.model_version == "v2.1.0"
    assert run.examples_count == 12 and run.positive_examples == 12
    assert run.total_tokens > 0 and run.estimated_cost > 0
    assert run.trained_tokens and run.poll_count == 3
    assert run.dataset_path == f"training_data/{run.pool}/{run.pk}.jsonl"  # a storage name, not a local path
    assert dataset_storage().exists(run.dataset_path) and len(run.dataset_sha256) == 64
    assert any("successfully completed" in event["message"] for event in run.events)
    assert run.checkpoints == []  # a retrieval model has no loss to report
    assert run.metrics["training_examples"] == 12 and run.metrics["segments"] >= 1
    assert run.test_output.startswith("Subject: ")
    model = run.registered_model
    assert model is not None and model.status == RegisteredModel.Status.READY
    assert (model.model_id, model.model_version, model.training_run_id) == (run.fine_tuned_model, "v2.1.0", run.pk)
    assert (model.provider, model.fine_tuning_job_id, model.dataset_sha256) == (
        "local",
        run.provider_job_id,
        run.dataset_sha256,
    )
    assert model.training_examples_count == 12 and model.positive_examples == 12


def test_the_result_carries_the_seeds_run_training_cycle_fields(organization: Organization) -> None:
    make_labels(organization)
    run = drive(start(organization))
    result = training_run_result(run=run)
    assert result["status"] == "success"
    assert result["model_id"] == run.fine_tuned_model and result["model_id"].startswith("ft:")
    assert result["model_version"] == "v2.1.0"
    assert result["registry_id"] == str(run.registered_model_id)
    assert result["job_id"] == run.provider_job_id
    assert result["training_stats"]["training_examples_count"] == 12
    assert result["training_stats"]["positive_examples"] == 12
    assert result["training_duration_seconds"] is not None and result["training_duration_seconds"] >= 0
    assert result["deployed"] is False
    json.dumps(result)


def test_the_global_pool_trains_on_every_organizations_labels() -> None:
    make_labels(OrganizationFactory.create(), positives=6)
    make_labels(OrganizationFactory.create(), positives=6)
    run = drive(start(None))
    assert run.status == Status.SUCCEEDED and run.pool == "global"
    assert run.examples_count == 12
    assert run.registered_model is not None and run.registered_model.organization_id is None


def test_too_few_examples_skip_the_run_with_the_reason(organization: Organization) -> None:
    make_labels(organization, positives=4)
    run = drive(start(organization))
    assert run.status == Status.SKIPPED
    assert "Only 4 eligible positive examples" in run.error and "at least 10" in run.error
    assert run.finished_at is not None and run.dataset_path == "" and run.model_version == ""
    assert local_provider_files("files") == []
    assert training_run_result(run=run)["status"] == "skipped"


def test_a_dpo_run_trains_on_pairs(organization: Organization) -> None:
    make_labels(organization, positives=6, negatives=12)
    run = drive(start(organization, method="dpo"))
    assert run.status == Status.SUCCEEDED, run.error
    assert run.examples_count == 12
    first = json.loads(dataset_read(run.dataset_path).splitlines()[0])
    assert set(first) >= {"input", "preferred_output", "non_preferred_output"}


def test_datasets_go_through_the_configured_storage_so_any_worker_can_upload_them(
    organization: Organization, settings: Any
) -> None:
    settings.STORAGES = {**settings.STORAGES, "datasets": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    settings.TRAINING_STORAGE = "datasets"
    make_labels(organization)
    run = drive(start(organization, validation_percent=20))
    assert run.status == Status.SUCCEEDED, run.error
    assert (run.dataset_path, run.validation_path) == (
        f"training_data/{run.pool}/{run.pk}.jsonl",
        f"training_data/{run.pool}/{run.pk}.validation.jsonl",
    )
    assert len(dataset_read(run.dataset_path).splitlines()) == run.examples_count
    scratch = Path(settings.TRAINING_DATA_DIR)
    assert not (Path(settings.MEDIA_ROOT) / run.dataset_path).exists()  # only in the configured storage
    assert [path for path in scratch.rglob("*") if path.is_file()] == []  # the scratch files are gone


# --- The openai provider through the real client -------------------------------------------------


def test_the_openai_path_sends_what_the_api_expects(organization: Organization, openai: FakeOpenAI) -> None:
    make_labels(organization)
    run = drive(start(organization, validation_percent=20))
    assert run.status == Status.SUCCEEDED, run.error

    uploads = openai.requests_to("files.create")
    assert [upload.body["purpose"] for upload in uploads] == ["fine-tune", "fine-tune"]
    assert uploads[0].body["file"]["content"] == dataset_read(run.dataset_path)
    assert uploads[1].body["file"]["content"] == dataset_read(run.validation_path)
    lines = [json.loads(line) for line in uploads[0].body["file"]["content"].splitlines()]
    assert len(lines) == run.examples_count == 10 and run.validation_examples_count == 2
    assert all(set(line) == {"messages"} for line in lines)  # no metadata: OpenAI refuses unknown keys

    (create,) = openai.requests_to("jobs.create")
    assert create.body["model"] == "gpt-4o-2024-08-06"
    assert create.body["training_file"] == run.provider_file_id
    assert create.body["validation_file"] == run.provider_validation_file_id
    assert create.body["suffix"] == "rekindle-v2-1-0"
    assert create.body["method"] == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": "auto"}},
    }
    assert create.body["metadata"] == {
        "training_run_id": str(run.pk),
        "organization_id": str(organization.pk),
        "organization": "acme",
        "model_version": "v2.1.0",
    }
    (chat,) = openai.requests_to("chat.completions")
    assert chat.body["model"] == run.fine_tuned_model
    assert run.test_output.startswith(f"[{run.fine_tuned_model}]")
    assert [checkpoint["step"] for checkpoint in run.checkpoints] == [10, 20, 30]


def test_the_openai_path_sends_dpo_with_its_beta(organization: Organization, openai: FakeOpenAI) -> None:
    make_labels(organization, positives=6, negatives=12)
    run = drive(start(organization, method="dpo"))
    assert run.status == Status.SUCCEEDED, run.error
    (create,) = openai.requests_to("jobs.create")
    assert create.body["method"]["type"] == "dpo"
    assert create.body["method"]["dpo"]["hyperparameters"]["beta"] == "auto"


# --- Provider faults -----------------------------------------------------------------------------


def test_a_failed_job_fails_the_run_with_the_providers_error_and_no_model(
    organization: Organization, openai: FakeOpenAI
) -> None:
    make_labels(organization)
    openai.fail_jobs("The job failed due to an invalid training file.")
    run = drive(start(organization))
    assert run.status == Status.FAILED
    assert run.error == "The job failed due to an invalid training file."
    assert run.provider_status == "failed" and run.finished_at is not None and run.claimed_at is None
    assert models_of(run) == [] and run.registered_model is None
    assert openai.requests_to("jobs.cancel") == []  # an ended job is not cancelled again
    assert not Schedule.objects.filter(name=poll_schedule_name(run.pk)).exists()


def test_a_rate_limit_is_retried_and_the_run_succeeds(organization: Organization, openai: FakeOpenAI) -> None:
    make_labels(organization)
    openai.fail_next("files.create", 429)
    openai.fail_next("jobs.create", 429)
    run = drive(start(organization))
    assert run.status == Status.SUCCEEDED, run.error
    assert len(openai.requests_to("files.create")) == 2 and len(openai.requests_to("jobs.create")) == 2
    assert len(openai.jobs) == 1


def test_server_errors_until_our_retries_give_up_fail_the_run_cleanly(
    organization: Organization, openai: FakeOpenAI, settings: Any
) -> None:
    make_labels(organization)
    settings.TRAINING_RETRY_DELAYS = (0, 0)
    openai.fail_next("files.create", 500, times=3, message="The server had an error.")
    run = drive(start(organization))
    assert run.status == Status.FAILED
    assert run.error == "OpenAI answered 500: The server had an error."
    assert len(openai.requests_to("files.create")) == 3  # the first try and two retries, none by the client
    assert openai.jobs == {} and run.provider_file_id == "" and run.provider_job_id == ""
    assert run.claimed_at is None and run.finished_at is not None and models_of(run) == []


def test_server_errors_while_polling_are_noted_and_polled_again(organization: Organization, openai: FakeOpenAI) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.TRAINING)
    openai.fail_next("jobs.retrieve", 503, times=3)
    Schedule.objects.all().delete()
    assert training_run_advance(run=run) is False
    run.refresh_from_db()
    assert run.status == Status.TRAINING and run.poll_count == 0
    assert run.error.startswith("Last poll failed, will retry: OpenAI answered 503")
    assert Schedule.objects.filter(name=poll_schedule_name(run.pk)).count() == 1
    run = drive(run)
    assert run.status == Status.SUCCEEDED and run.error == ""


def test_a_timeout_while_polling_leaves_the_run_training(
    organization: Organization, openai: FakeOpenAI, settings: Any
) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.TRAINING)
    settings.OPENAI_TIMEOUT = 0.2
    settings.OPENAI_MAX_RETRIES = 0
    openai.delay_next("jobs.retrieve", 1.0)
    training_run_advance(run=run)
    run.refresh_from_db()
    assert run.status == Status.TRAINING and "did not answer in time" in run.error
    assert drive(run).status == Status.SUCCEEDED


def test_a_timeout_while_uploading_fails_the_run_when_no_retry_is_left(
    organization: Organization, openai: FakeOpenAI, settings: Any
) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.UPLOADING)
    settings.TRAINING_RETRY_DELAYS = ()
    settings.OPENAI_TIMEOUT = 0.2
    settings.OPENAI_MAX_RETRIES = 0
    openai.delay_next("files.create", 1.0)
    run = drive(run)
    assert run.status == Status.FAILED and "did not answer in time" in run.error
    assert run.provider_job_id == "" and run.claimed_at is None


def test_a_job_that_outlives_the_maximum_wait_is_cancelled_and_the_run_fails(
    organization: Organization, openai: FakeOpenAI, settings: Any
) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.TRAINING)
    settings.TRAINING_MAX_WAIT = 60
    TrainingRun.objects.filter(pk=run.pk).update(training_started_at=timezone.now() - datetime.timedelta(minutes=2))
    run = drive(run)
    assert run.status == Status.FAILED and "did not finish within 60 s" in run.error
    assert openai.jobs[run.provider_job_id]["status"] == "cancelled"


def test_a_job_that_ended_before_a_late_poll_is_taken_as_it_ended(
    organization: Organization, openai: FakeOpenAI, settings: Any
) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.TRAINING)
    provider = get_provider("openai")
    while not provider.get_job(run.provider_job_id).is_terminal:  # it ended while no worker ran
        pass
    settings.TRAINING_MAX_WAIT = 60
    TrainingRun.objects.filter(pk=run.pk).update(training_started_at=timezone.now() - datetime.timedelta(days=2))
    assert drive(run).status == Status.SUCCEEDED


def test_a_failure_after_registering_leaves_no_ready_model(organization: Organization, openai: FakeOpenAI) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.TESTING)
    openai.fail_next("chat.completions", 500, times=3)
    run = drive(run)
    assert run.status == Status.FAILED and run.error.startswith("OpenAI answered 500")
    (model,) = models_of(run)
    assert model.status == RegisteredModel.Status.FAILED and "OpenAI answered 500" in model.error
    assert openai.requests_to("jobs.cancel") == []


def test_a_base_model_near_its_shutdown_is_refused_before_anything_is_uploaded(
    organization: Organization, openai: FakeOpenAI
) -> None:
    make_labels(organization)
    openai.add_model("gpt-4o-2024-08-06", shutdown_date=timezone.now().date() + datetime.timedelta(days=5))
    run = drive(start(organization))
    assert run.status == Status.FAILED
    assert "gpt-4o-2024-08-06 shuts down on" in run.error and "BASE_MODEL_SHUTDOWN_GUARD_DAYS" in run.error
    assert openai.requests_to("files.create") == [] and openai.jobs == {}


# --- One active run per pool, versions -----------------------------------------------------------


def test_a_second_start_while_a_run_is_active_is_refused(organization: Organization) -> None:
    first = start(organization)
    with pytest.raises(Conflict, match="already pending") as refused:
        start(organization)
    assert refused.value.status_code == 409
    assert refused.value.details["active_run_id"] == str(first.pk)
    assert start(None).pool == "global"  # another pool is free
    training_run_cancel(run=first)
    assert start(organization).status == Status.PENDING


def test_the_database_allows_one_active_run_per_pool(organization: Organization) -> None:
    TrainingRunFactory.create(organization=organization, status=Status.TRAINING)
    TrainingRunFactory.create(organization=organization, status=Status.SUCCEEDED)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRunFactory.create(organization=organization, status=Status.PENDING)


def test_versions_increment_per_pool(organization: Organization) -> None:
    make_labels(organization)
    assert next_version(organization_id=organization.pk) == "v2.1.0"
    first = drive(start(organization))
    make_labels(organization, positives=1)  # new data, or the second run would be skipped
    second = drive(start(organization))
    assert (first.model_version, second.model_version) == ("v2.1.0", "v2.2.0")
    assert next_version(organization_id=None) == "v2.1.0"  # the global pool counts on its own
    model_register(model_id="ft:x", model_version="v3.4.0", base_model="gpt-4o-2024-08-06", organization=organization)
    assert next_version(organization_id=organization.pk) == "v3.5.0"


def test_a_given_version_must_be_free_and_well_formed(organization: Organization) -> None:
    make_labels(organization)
    drive(start(organization, model_version="v2.5.0"))
    with pytest.raises(Conflict, match=r"v2\.5\.0 is already taken"):
        start(organization, model_version="v2.5.0")
    with pytest.raises(ValidationError, match=r"not a version like v2\.1\.0"):
        start(organization, model_version="2.6")
    assert next_version(organization_id=organization.pk) == "v2.6.0"


def test_a_failed_runs_version_is_free_again(organization: Organization, openai: FakeOpenAI) -> None:
    make_labels(organization)
    openai.fail_next("files.create", 400, message="Bad file.")
    failed = drive(start(organization))
    assert failed.status == Status.FAILED and failed.model_version == "v2.1.0"
    assert drive(start(organization)).model_version == "v2.1.0"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"min_quality_score": 1.5}, "min_quality_score"),
        ({"ab_test_percentage": 0}, "ab_test_percentage"),
        ({"validation_percent": 100}, "validation_percent"),
        ({"method": "rlhf"}, "method"),
    ],
)
def test_parameters_out_of_range_are_refused(organization: Organization, options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        start(organization, **options)
    assert field in refused.value.message_dict
    assert not TrainingRun.objects.exists()


# --- Cancelling and deploying --------------------------------------------------------------------


def test_cancelling_a_training_run_cancels_its_job(organization: Organization, openai: FakeOpenAI) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.TRAINING)
    user = UserFactory.create(username="ops")
    training_run_cancel(run=run, actor=user, reason="wrong data")
    assert run.status == Status.CANCELLED and run.error == "Cancelled by ops: wrong data"
    assert openai.jobs[run.provider_job_id]["status"] == "cancelled"
    assert not Schedule.objects.filter(name=poll_schedule_name(run.pk)).exists()
    assert training_run_advance(run=run) is False
    with pytest.raises(Conflict, match="already cancelled"):
        training_run_cancel(run=run)


def test_cancelling_after_registration_fails_the_model(organization: Organization) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.TESTING)
    training_run_cancel(run=run)
    (model,) = models_of(run)
    assert model.status == RegisteredModel.Status.FAILED
    assert drive(run).status == Status.CANCELLED


def test_deploying_immediately_starts_an_ab_test_against_the_control(organization: Organization) -> None:
    make_labels(organization)
    control = model_register(
        model_id="gpt-4o-2024-08-06", model_version="v2.0.0", base_model="gpt-4o-2024-08-06", organization=organization
    )
    model_deploy(model=control, traffic_percentage=100.0)
    run = drive(start(organization, deploy_immediately=True, ab_test_percentage=20.0))
    assert run.status == Status.SUCCEEDED and run.deployed and run.error == ""
    variant = run.registered_model
    control.refresh_from_db()
    assert variant is not None and (variant.status, variant.traffic_percentage, variant.ab_test_group) == (
        RegisteredModel.Status.DEPLOYED,
        20.0,
        RegisteredModel.ABTestGroup.VARIANT_A,
    )
    assert (control.traffic_percentage, control.ab_test_group) == (80.0, RegisteredModel.ABTestGroup.CONTROL)
    experiment = Experiment.objects.get()
    assert (experiment.control, experiment.variant, experiment.status) == (control, variant, "running")
    assert training_run_result(run=run)["deployed"] is True


def test_without_a_control_the_model_stays_ready_and_the_run_says_why(organization: Organization) -> None:
    make_labels(organization)
    run = drive(start(organization, deploy_immediately=True))
    assert run.status == Status.SUCCEEDED and not run.deployed
    assert run.error.startswith("Not deployed: Nothing is deployed in this pool")
    assert run.registered_model is not None and run.registered_model.status == RegisteredModel.Status.READY


# --- The weekly schedule's entry point -----------------------------------------------------------


def test_the_weekly_training_starts_a_run_or_leaves_an_active_one(organization: Organization) -> None:
    run = schedule_weekly_training(organization=organization)
    assert run is not None and run.triggered_by == TrainingRun.Trigger.SCHEDULE and run.actor_label == "system"
    assert schedule_weekly_training(organization=organization) is None
    assert tasks.weekly_training(str(organization.pk)) is None
    assert tasks.weekly_training(None) is not None


def test_tasks_ignore_runs_that_are_gone_or_ended(organization: Organization) -> None:
    assert tasks.advance_run("00000000-0000-0000-0000-000000000000") is False
    run = start(organization)
    training_run_cancel(run=run)
    assert tasks.advance_run(str(run.pk)) is False
    assert tasks.poll_run(str(run.pk)) is False
    assert get_provider().name == "local"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="two writers at once need PostgreSQL")
def test_two_starts_at_the_same_moment_make_one_run() -> None:
    organization = OrganizationFactory.create()
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def attempt() -> None:
        try:
            barrier.wait()
            start(organization)
            outcomes.append("started")
        except Conflict:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "started"]
    assert TrainingRun.objects.count() == 1  # the refused start left nothing behind
