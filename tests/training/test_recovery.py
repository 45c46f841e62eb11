"""Crashes, duplicate deliveries and resuming: a step is done once, and a dead worker's is taken over in a minute."""

import datetime
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.signals import post_spawn

from experiments.models import Experiment
from flywheel.models import Organization
from registry.models import RegisteredModel
from registry.services import model_deploy, model_register
from tests.training.fake_openai import FakeOpenAI
from tests.training.helpers import drive, drive_to, make_labels
from training import tasks
from training.heartbeat import claim_heartbeat
from training.models import TrainingRun
from training.schedules import RESUME_LATER_SCHEDULE, poll_schedule_name
from training.services import training_run_advance, training_run_start, training_runs_resume
from training.transitions import STEP_LEASE, run_claim_renew, run_claim_step

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("run_settings")]

Status = TrainingRun.Status
OnCommit = Callable[..., Any]


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks go to the queue instead of running at once: with transaction=True every commit is immediate."""
    monkeypatch.setattr(Conf, "SYNC", False)


@pytest.fixture
def openai(settings: Any, fake_openai: FakeOpenAI) -> FakeOpenAI:
    settings.FINE_TUNING_PROVIDER = "openai"
    return fake_openai


def start(organization: Organization | None, **options: Any) -> TrainingRun:
    return training_run_start(organization=organization, triggered_by="command", actor=None, **options)


def models_of(run: TrainingRun) -> list[RegisteredModel]:
    return list(RegisteredModel.objects.filter(training_run_id=run.pk))


def uploading_run(organization: Organization) -> TrainingRun:
    make_labels(organization)
    return drive_to(training_run_start(organization=organization, triggered_by="command", actor=None), Status.UPLOADING)


def ago(seconds: float) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(seconds=seconds)


def test_the_lease_is_about_a_minute() -> None:
    assert STEP_LEASE.total_seconds() <= 90


def test_a_claim_older_than_the_short_lease_is_taken_over(organization: Organization) -> None:
    run = uploading_run(organization)
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=ago(30))
    assert training_run_advance(run=run) is False  # its worker may still be alive
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=ago(STEP_LEASE.total_seconds() + 1))
    assert training_run_advance(run=run) is True
    assert run.status == Status.TRAINING


def test_the_lease_follows_the_setting(organization: Organization, settings: Any) -> None:
    settings.TRAINING_STEP_LEASE = 5
    run = uploading_run(organization)
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=ago(6))
    assert training_run_advance(run=run) is True


def test_a_renewed_claim_is_not_taken_over(organization: Organization) -> None:
    run = uploading_run(organization)
    lease = STEP_LEASE.total_seconds()
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=ago(10 * lease), heartbeat_at=ago(lease / 2))
    assert training_run_advance(run=run) is False
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=ago(lease + 1))
    assert training_run_advance(run=run) is True


def test_a_claim_is_renewed_only_while_it_is_ours(organization: Organization) -> None:
    run = uploading_run(organization)
    claim = run_claim_step(run=run)
    assert claim is not None and run_claim_renew(run_id=run.pk, claim=claim) is True
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=ago(1))  # another worker took over
    assert run_claim_renew(run_id=run.pk, claim=claim) is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("queued")
def test_the_heartbeat_keeps_a_long_steps_claim_alive(organization: Organization, settings: Any) -> None:
    settings.TRAINING_STEP_LEASE = 0.5
    settings.TRAINING_HEARTBEAT_INTERVAL = 0.1
    run = uploading_run(organization)
    claim = run_claim_step(run=run)
    assert claim is not None
    with claim_heartbeat(run_id=run.pk, claim=claim):
        time.sleep(1.0)  # a step twice as long as the lease
    assert run_claim_step(run=TrainingRun.objects.get(pk=run.pk)) is None  # still held
    time.sleep(0.6)  # the step's worker died: nobody renews
    assert run_claim_step(run=TrainingRun.objects.get(pk=run.pk)) is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="two writers at once need PostgreSQL")
@pytest.mark.usefixtures("queued")
def test_a_second_delivery_during_a_long_upload_leaves_it_alone(
    organization: Organization, settings: Any, fake_openai: FakeOpenAI
) -> None:
    settings.FINE_TUNING_PROVIDER = "openai"
    settings.TRAINING_STEP_LEASE = 0.5
    settings.TRAINING_HEARTBEAT_INTERVAL = 0.1
    run = uploading_run(organization)
    fake_openai.delay_next("files.create", 1.5)  # the upload takes three leases
    second: list[bool] = []

    def deliver_again() -> None:
        try:
            time.sleep(1.0)
            second.append(training_run_advance(run=TrainingRun.objects.get(pk=run.pk)))
        finally:
            connections.close_all()

    other = threading.Thread(target=deliver_again)
    other.start()
    assert training_run_advance(run=run) is True
    other.join()
    assert second == [False]
    assert len(fake_openai.files) == 1 and len(fake_openai.jobs) == 1


# --- Crashes, duplicates and resuming ------------------------------------------------------------

# Each step, the status it runs in and the status it moves to.
TRANSITIONS = [
    (Status.EXPORTING, Status.UPLOADING),
    (Status.UPLOADING, Status.TRAINING),
    (Status.TRAINING, Status.REGISTERING),
    (Status.REGISTERING, Status.TESTING),
    (Status.TESTING, Status.SUCCEEDED),
]


@pytest.mark.parametrize(("crashed_in", "reached"), TRANSITIONS)
def test_a_crash_after_a_steps_work_resumes_without_doing_it_twice(
    organization: Organization, openai: FakeOpenAI, crashed_in: str, reached: str
) -> None:
    """The worker did the step's work and recorded it, then died before moving the status on."""
    make_labels(organization)
    run = drive_to(start(organization), reached)
    dead_worker = timezone.now() - STEP_LEASE - datetime.timedelta(seconds=1)
    TrainingRun.objects.filter(pk=run.pk).update(status=crashed_in, claimed_at=dead_worker, finished_at=None)
    run = drive(run)
    assert run.status == Status.SUCCEEDED, run.error
    assert len(models_of(run)) == 1
    assert len(openai.requests_to("files.create")) == 1 and len(openai.jobs) == 1


@pytest.mark.parametrize("status", [Status.EXPORTING, Status.UPLOADING, Status.REGISTERING, Status.TESTING])
def test_a_claimed_step_is_left_alone_until_its_lease_expires(
    organization: Organization, openai: FakeOpenAI, status: str
) -> None:
    """A second delivery while a worker holds the step does nothing; after a crash it takes over."""
    make_labels(organization)
    run = start(organization)
    if status == Status.EXPORTING:  # a worker moved it and is exporting: no resting state to drive to
        TrainingRun.objects.filter(pk=run.pk).update(status=status)
    run = drive_to(run, status)
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=timezone.now())
    assert training_run_advance(run=run) is False
    run.refresh_from_db()
    assert run.status == status
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=timezone.now() - STEP_LEASE - datetime.timedelta(seconds=1))
    assert drive(run).status == Status.SUCCEEDED
    assert len(models_of(run)) == 1 and len(openai.jobs) == 1


def test_a_crash_after_deploying_resumes_without_deploying_twice(organization: Organization) -> None:
    make_labels(organization)
    control = model_register(
        model_id="gpt-4o-2024-08-06", model_version="v2.0.0", base_model="gpt-4o-2024-08-06", organization=organization
    )
    model_deploy(model=control, traffic_percentage=100.0)
    run = drive(start(organization, deploy_immediately=True))
    dead_worker = timezone.now() - STEP_LEASE - datetime.timedelta(seconds=1)
    TrainingRun.objects.filter(pk=run.pk).update(status=Status.DEPLOYING, claimed_at=dead_worker, deployed=False)
    run = drive(run)
    assert run.status == Status.SUCCEEDED and run.deployed and run.error == ""
    assert RegisteredModel.objects.filter(organization=organization, status="deployed").count() == 2
    assert Experiment.objects.count() == 1


def test_every_task_delivered_twice_registers_the_model_once(organization: Organization, openai: FakeOpenAI) -> None:
    make_labels(organization)
    run = start(organization)
    while run.is_active:
        duplicate = TrainingRun.objects.get(pk=run.pk)
        training_run_advance(run=run)
        training_run_advance(run=duplicate)  # the stale copy a second delivery would have loaded
        run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert len(models_of(run)) == 1
    assert len(openai.requests_to("files.create")) == 1 and len(openai.jobs) == 1


def test_resume_redelivers_a_run_whose_task_was_lost(
    organization: Organization, django_capture_on_commit_callbacks: OnCommit
) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.UPLOADING)
    TrainingRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - datetime.timedelta(minutes=10))
    with django_capture_on_commit_callbacks(execute=True):
        assert training_runs_resume() == 1
    run.refresh_from_db()
    assert run.status == Status.TRAINING
    Schedule.objects.all().delete()  # the poll chain broke too
    assert tasks.resume_stuck_runs() == 1
    assert Schedule.objects.filter(name=poll_schedule_name(run.pk)).count() == 1
    assert training_runs_resume() == 0  # a poll is pending: nothing to do


def test_resume_leaves_a_run_that_just_moved_or_is_claimed(organization: Organization) -> None:
    make_labels(organization)
    run = drive_to(start(organization), Status.UPLOADING)
    assert training_runs_resume() == 0
    TrainingRun.objects.filter(pk=run.pk).update(
        updated_at=timezone.now() - datetime.timedelta(minutes=10), claimed_at=timezone.now()
    )
    assert training_runs_resume() == 0


# --- Resuming ------------------------------------------------------------------------------------


def test_the_sweep_takes_over_a_dead_workers_claim_at_once(
    organization: Organization, django_capture_on_commit_callbacks: OnCommit
) -> None:
    run = uploading_run(organization)
    expired = ago(STEP_LEASE.total_seconds() + 1)
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=expired, updated_at=expired)
    with django_capture_on_commit_callbacks(execute=True):
        assert training_runs_resume() == 1
    run.refresh_from_db()
    assert run.status == Status.TRAINING


def test_the_sweep_leaves_a_run_waiting_to_retry(organization: Organization) -> None:
    run = uploading_run(organization)
    TrainingRun.objects.filter(pk=run.pk).update(updated_at=ago(600), retry_at=timezone.now() + STEP_LEASE)
    assert training_runs_resume() == 0
    TrainingRun.objects.filter(pk=run.pk).update(retry_at=ago(1))
    assert training_runs_resume() == 1  # its retry's delivery was lost


def test_a_worker_starting_runs_the_resume_sweep(
    organization: Organization, django_capture_on_commit_callbacks: OnCommit
) -> None:
    run = uploading_run(organization)
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=ago(STEP_LEASE.total_seconds() + 1))
    with django_capture_on_commit_callbacks(execute=True):
        post_spawn.send(sender="django_q", proc_name="Process-1")
    run.refresh_from_db()
    assert run.status == Status.TRAINING
    assert drive(run).status == Status.SUCCEEDED


def test_a_worker_starting_while_a_claim_is_live_sweeps_again_when_it_expires(organization: Organization) -> None:
    """A cluster restarted right after a kill -9 finds the dead worker's claim still live."""
    run = uploading_run(organization)
    claimed = ago(10)
    TrainingRun.objects.filter(pk=run.pk).update(claimed_at=claimed, heartbeat_at=ago(5))
    post_spawn.send(sender="django_q", proc_name="Process-1")
    run.refresh_from_db()
    assert run.status == Status.UPLOADING and run.claimed_at == claimed  # not taken over yet
    later = Schedule.objects.get(name=RESUME_LATER_SCHEDULE)
    assert later.func == "training.tasks.resume_stuck_runs" and later.schedule_type == Schedule.ONCE
    assert run.heartbeat_at is not None
    expected = run.heartbeat_at + STEP_LEASE + datetime.timedelta(seconds=1)
    assert abs((later.next_run - expected).total_seconds()) < 0.01


def test_a_worker_starting_with_no_claim_held_schedules_nothing_more(organization: Organization) -> None:
    uploading_run(organization)
    post_spawn.send(sender="django_q", proc_name="Process-1")
    assert not Schedule.objects.filter(name=RESUME_LATER_SCHEDULE).exists()
