"""At most one file and one job per run under every provider fault, and retries that wait in the queue.

Driven through the real openai client over HTTP against the stand-in, which can carry out a creation
and then lose its answer (a 502, or an answer slower than the client's timeout).
"""

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from django_q.models import Schedule

from flywheel.models import Organization
from tests.training.fake_openai import FakeOpenAI
from tests.training.helpers import (
    drive,
    drive_to,
    local_provider_files,
    make_labels,
    run_due_schedules,
    wait_out_retry,
)
from training.datasets.storage import dataset_storage
from training.models import TrainingRun
from training.providers import get_provider
from training.provisioning import dataset_file_name
from training.schedules import retry_schedule_name
from training.services import training_run_advance, training_run_cancel, training_run_start
from training.transitions import STEP_LEASE

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("run_settings")]

Status = TrainingRun.Status
OnCommit = Callable[..., Any]


@pytest.fixture
def openai(settings: Any, fake_openai: FakeOpenAI) -> FakeOpenAI:
    settings.FINE_TUNING_PROVIDER = "openai"
    settings.OPENAI_TIMEOUT = 0.5
    return fake_openai


def stored_path(run: TrainingRun) -> str:
    """The local path of the run's stored dataset, as a dead worker would have uploaded it."""
    return str(dataset_storage().path(run.dataset_path))


def start(organization: Organization) -> TrainingRun:
    return training_run_start(organization=organization, triggered_by="command", actor=None)


def inject(openai: FakeOpenAI, route: str, fault: str) -> None:
    if fault == "502 after creating":
        openai.fail_after(route, 502)
    else:  # the answer comes after the client gave up
        openai.delay_after(route, 1.5)


# --- One file and one job whatever the fault ----------------------------------------------------


@pytest.mark.parametrize("route", ["files.create", "jobs.create"])
@pytest.mark.parametrize("fault", ["502 after creating", "answer slower than the timeout"])
def test_a_lost_answer_to_a_creation_leaves_one_file_and_one_job(
    organization: Organization, openai: FakeOpenAI, route: str, fault: str
) -> None:
    make_labels(organization)
    inject(openai, route, fault)
    run = drive(start(organization))
    assert run.status == Status.SUCCEEDED, run.error
    assert len(openai.jobs) == 1 and len(openai.files) == 1 and openai.deleted_files == {}
    assert len(openai.requests_to(route)) == 1  # the retry found what the lost answer had made
    assert (run.provider_job_id, run.provider_file_id) == (next(iter(openai.jobs)), next(iter(openai.files)))


def test_a_job_created_by_a_worker_that_died_before_recording_it_is_adopted(
    organization: Organization, openai: FakeOpenAI
) -> None:
    """kill -9 while the create request was in flight: the provider made the job, we never recorded it."""
    make_labels(organization)
    run = drive_to(start(organization), Status.UPLOADING)
    provider = get_provider("openai")
    file_id = provider.upload_training_file(stored_path(run), name=dataset_file_name(run=run, kind="train"))
    job_id = provider.create_job(training_file=file_id, model=run.base_model, metadata={"training_run_id": run.pk})
    dead_worker = timezone.now() - STEP_LEASE - datetime.timedelta(seconds=1)
    TrainingRun.objects.filter(pk=run.pk).update(provider_file_id=file_id, claimed_at=dead_worker)
    run = drive(run)
    assert run.status == Status.SUCCEEDED, run.error
    assert run.provider_job_id == job_id and len(openai.jobs) == 1
    assert len(openai.requests_to("jobs.create")) == 1  # the dead worker's only


def test_on_the_local_provider_a_job_that_was_never_recorded_is_adopted(organization: Organization) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.UPLOADING)
    provider = get_provider("local")
    file_id = provider.upload_training_file(stored_path(run), name=dataset_file_name(run=run, kind="train"))
    job_id = provider.create_job(training_file=file_id, model=run.base_model, metadata={"training_run_id": run.pk})
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=timezone.now() - STEP_LEASE - datetime.timedelta(seconds=1))
    run = drive(run)
    assert run.status == Status.SUCCEEDED, run.error
    assert (run.provider_job_id, run.provider_file_id) == (job_id, file_id)
    assert len(local_provider_files("jobs")) == 1 and len(local_provider_files("files")) == 1


def test_a_file_uploaded_by_a_worker_that_died_before_recording_it_is_reused(
    organization: Organization, openai: FakeOpenAI
) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.UPLOADING)
    file_id = get_provider("openai").upload_training_file(
        stored_path(run), name=dataset_file_name(run=run, kind="train")
    )
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=timezone.now() - STEP_LEASE - datetime.timedelta(seconds=1))
    run = drive(run)
    assert run.status == Status.SUCCEEDED, run.error
    assert run.provider_file_id == file_id and len(openai.files) == 1


def test_orphan_jobs_are_cancelled_and_duplicate_files_deleted(organization: Organization, openai: FakeOpenAI) -> None:
    """Left by an earlier version that retried creations blindly: the oldest of each is kept."""
    make_labels(organization)
    run = drive_to(start(organization), Status.UPLOADING)
    provider = get_provider("openai")
    name = dataset_file_name(run=run, kind="train")
    files = [provider.upload_training_file(stored_path(run), name=name) for _ in range(3)]
    jobs = [
        provider.create_job(training_file=files[0], model=run.base_model, metadata={"training_run_id": run.pk})
        for _ in range(2)
    ]
    run = drive(run)
    assert run.status == Status.SUCCEEDED, run.error
    assert (run.provider_file_id, run.provider_job_id) == (files[0], jobs[0])
    assert set(openai.deleted_files) == set(files[1:])
    assert openai.jobs[jobs[1]]["status"] == "cancelled"


def test_cancelling_a_run_cancels_a_job_it_never_recorded(organization: Organization, openai: FakeOpenAI) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.UPLOADING)
    openai.fail_after("jobs.create", 502)
    training_run_advance(run=run)  # the file is recorded; the job was made but its answer lost
    run.refresh_from_db()
    assert run.status == Status.UPLOADING and run.provider_file_id and not run.provider_job_id
    training_run_cancel(run=run)
    (job,) = openai.jobs.values()
    assert job["status"] == "cancelled"
    assert not Schedule.objects.filter(name=retry_schedule_name(run.pk)).exists()


# --- Retries over minutes, through the queue ----------------------------------------------------


def test_six_429s_on_job_creation_do_not_fail_the_run(
    organization: Organization, openai: FakeOpenAI, django_capture_on_commit_callbacks: OnCommit
) -> None:
    make_labels(organization)
    openai.fail_next("jobs.create", 429, times=6)
    with django_capture_on_commit_callbacks(execute=True):
        run = start(organization)
    waits = []
    for _ in range(6):
        run.refresh_from_db()
        assert run.status == Status.UPLOADING and run.claimed_at is None  # no worker waits
        schedule = Schedule.objects.get(name=retry_schedule_name(run.pk))
        assert schedule.func == "training.tasks.advance_run" and schedule.schedule_type == Schedule.ONCE
        waits.append(round((schedule.next_run - run.updated_at).total_seconds()))
        assert schedule.next_run == run.retry_at
        wait_out_retry(run)
        with django_capture_on_commit_callbacks(execute=True):
            run_due_schedules()
    run.refresh_from_db()
    assert run.status == Status.TRAINING and run.step_retries == 0 and run.error == ""
    assert waits == [15, 30, 60, 120, 240, 240]
    assert len(openai.requests_to("jobs.create")) == 7 and len(openai.jobs) == 1 and len(openai.files) == 1
    assert drive(run).status == Status.SUCCEEDED


def test_a_step_waiting_to_retry_is_not_taken_before_its_time(organization: Organization, openai: FakeOpenAI) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.UPLOADING)
    openai.fail_next("files.create", 503)
    assert training_run_advance(run=run) is False
    run.refresh_from_db()
    assert run.step_retries == 1 and run.retry_at is not None and run.retry_at > timezone.now()
    assert run.error.startswith("Try 1 failed, retrying in 15 s: OpenAI answered 503")
    assert training_run_advance(run=run) is False  # an early delivery does nothing
    assert len(openai.requests_to("files.create")) == 1
    assert drive(run).status == Status.SUCCEEDED


def test_an_error_that_is_not_worth_retrying_fails_the_run_at_once(
    organization: Organization, openai: FakeOpenAI
) -> None:
    make_labels(organization)
    openai.fail_next("jobs.create", 400, message="Invalid suffix.")
    run = drive(start(organization))
    assert run.status == Status.FAILED and run.error == "OpenAI answered 400: Invalid suffix."
    assert run.step_retries == 0 and len(openai.requests_to("jobs.create")) == 1
