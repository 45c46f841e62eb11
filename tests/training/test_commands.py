"""The training commands: run_training_cycle, cancel_training_run, setup_schedules, test_model."""

import datetime
import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import Schedule

from flywheel.models import Organization
from tests.factories import OrganizationFactory
from tests.training.fake_openai import FakeOpenAI
from tests.training.helpers import drive, make_labels, run_due_schedules
from training.models import TrainingRun
from training.schedules import RESUME_SCHEDULE, weekly_schedule_name
from training.services import training_run_start

pytestmark = pytest.mark.django_db

Status = TrainingRun.Status


@pytest.fixture(autouse=True)
def _training_settings(settings: Any) -> None:
    settings.TRAINING_MIN_EXAMPLES = 10
    settings.FINE_TUNING_PROVIDER = "local"
    settings.TRAINING_SCHEDULE_GLOBAL = True
    settings.TRAINING_SCHEDULE_ORGANIZATIONS = []


@pytest.fixture
def organization() -> Organization:
    organization = OrganizationFactory.create(slug="acme")
    make_labels(organization)
    return organization


def run_command(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- run_training_cycle --------------------------------------------------------------------------


def test_run_training_cycle_with_wait_drives_the_run_to_its_end(organization: Organization) -> None:
    output = run_command("run_training_cycle", "--organization", "acme", "--wait", "--poll-interval", "0")
    run = TrainingRun.objects.get()
    assert run.status == Status.SUCCEEDED and run.triggered_by == TrainingRun.Trigger.COMMAND
    assert "Exported 12 examples" in output and f"Fine-tuning job {run.provider_job_id}: running" in output
    assert "Registered v2.1.0; testing it" in output and "Training run succeeded." in output
    result = json.loads(output[output.index("{") : output.rindex("}") + 1])
    assert result["status"] == "success" and result["registry_id"] == str(run.registered_model_id)


def test_run_training_cycle_passes_every_option(organization: Organization) -> None:
    run_command(
        "run_training_cycle",
        "--organization",
        str(organization.pk),
        "--model-version",
        "v3.0.0",
        "--min-quality-score",
        "0.5",
        "--method",
        "dpo",
        "--validation-percent",
        "10",
        "--deploy-immediately",
        "--ab-test-percentage",
        "25",
    )
    run = TrainingRun.objects.get()
    assert (run.organization, run.model_version, run.min_quality_score, run.method) == (
        organization,
        "v3.0.0",
        0.5,
        "dpo",
    )
    assert (run.validation_percent, run.deploy_immediately, run.ab_test_percentage) == (10, True, 25)
    assert run.status == Status.PENDING  # without --wait a django-q2 worker takes it


def test_without_an_organization_the_global_pool_trains(organization: Organization) -> None:
    output = run_command("run_training_cycle")
    assert "started for the global pool" in output and "qcluster" in output
    assert TrainingRun.objects.get().pool == "global"


def test_a_failed_run_makes_the_command_fail(
    organization: Organization, settings: Any, fake_openai: FakeOpenAI
) -> None:
    settings.FINE_TUNING_PROVIDER = "openai"
    fake_openai.fail_jobs("Invalid file format.")
    with pytest.raises(CommandError, match=r"Training run failed: Invalid file format\."):
        run_command("run_training_cycle", "--organization", "acme", "--wait", "--poll-interval", "0")


def test_a_skipped_run_is_not_an_error(settings: Any) -> None:
    OrganizationFactory.create(slug="empty")
    output = run_command("run_training_cycle", "--organization", "empty", "--wait")
    assert "Ended: skipped (Only 0 eligible positive examples" in output and "Training run skipped." in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--organization", "nobody"], "No organization has the slug or id 'nobody'"),
        (["--model-version", "3"], "not a version like v2.1.0"),
        (["--min-quality-score", "2"], "Must be between 0 and 1"),
    ],
)
def test_run_training_cycle_refuses_bad_input(organization: Organization, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run_command("run_training_cycle", *args)
    assert not TrainingRun.objects.exists()


def test_run_training_cycle_refuses_a_second_active_run(organization: Organization) -> None:
    run_command("run_training_cycle", "--organization", "acme")
    with pytest.raises(CommandError, match="already pending"):
        run_command("run_training_cycle", "--organization", "acme")


# --- cancel_training_run -------------------------------------------------------------------------


def test_cancel_training_run_cancels_an_active_run(organization: Organization) -> None:
    run = training_run_start(organization=organization, triggered_by="command", actor=None)
    output = run_command("cancel_training_run", str(run.pk), "--reason", "bad data")
    run.refresh_from_db()
    assert run.status == Status.CANCELLED and run.error == "Cancelled by system: bad data"
    assert "cancelled" in output
    with pytest.raises(CommandError, match="already cancelled"):
        run_command("cancel_training_run", str(run.pk))


@pytest.mark.parametrize("run_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_cancel_training_run_reports_an_unknown_run(run_id: str) -> None:
    with pytest.raises(CommandError):
        run_command("cancel_training_run", run_id)


# --- setup_schedules -----------------------------------------------------------------------------


def test_setup_schedules_creates_the_weekly_and_resume_schedules_once(organization: Organization) -> None:
    assert "2 schedule(s) created, 0 updated, 0 removed" in run_command("setup_schedules")
    weekly = Schedule.objects.get(name=weekly_schedule_name(None))
    assert weekly.func == "training.tasks.weekly_training" and weekly.args is None
    assert weekly.schedule_type in (Schedule.CRON, Schedule.WEEKLY)
    if weekly.schedule_type == Schedule.CRON:
        assert weekly.cron == "0 2 * * 1"
    assert weekly.next_run is not None
    next_run = weekly.next_run.astimezone(datetime.UTC)
    assert (next_run.weekday(), next_run.hour, next_run.minute) == (0, 2, 0)
    resume = Schedule.objects.get(name=RESUME_SCHEDULE)
    assert (resume.func, resume.schedule_type, resume.minutes) == ("training.tasks.resume_stuck_runs", "I", 1)

    assert "0 schedule(s) created, 2 updated, 0 removed" in run_command("setup_schedules")
    assert Schedule.objects.count() == 3  # and the registry's daily A/B auto-promotion
    assert Schedule.objects.get(name=weekly_schedule_name(None)).next_run == weekly.next_run


def test_setup_schedules_brings_an_older_resume_schedule_to_every_minute(organization: Organization) -> None:
    run_command("setup_schedules")
    later = timezone.now() + datetime.timedelta(minutes=10)
    Schedule.objects.filter(name=RESUME_SCHEDULE).update(minutes=10, next_run=later)
    assert "0 schedule(s) created, 2 updated" in run_command("setup_schedules")
    resume = Schedule.objects.get(name=RESUME_SCHEDULE)
    assert resume.minutes == 1 and Schedule.objects.filter(name=RESUME_SCHEDULE).count() == 1
    assert resume.next_run is not None and resume.next_run < later  # the new timing starts now, not in 10 minutes


def test_setup_schedules_follows_the_configured_pools(organization: Organization, settings: Any) -> None:
    other = OrganizationFactory.create(slug="globex")
    settings.TRAINING_SCHEDULE_ORGANIZATIONS = ["acme", str(other.pk)]
    run_command("setup_schedules")
    acme = Schedule.objects.get(name=weekly_schedule_name(organization))
    assert acme.args == repr(str(organization.pk))
    settings.TRAINING_SCHEDULE_GLOBAL = False
    settings.TRAINING_SCHEDULE_ORGANIZATIONS = ["globex"]
    assert "0 created, 2 updated, 2 removed" in run_command("setup_schedules").replace(" schedule(s)", "")
    weekly = Schedule.objects.filter(name__startswith="training: weekly")
    assert list(weekly.values_list("name", flat=True)) == [weekly_schedule_name(other)]


def test_setup_schedules_refuses_unknown_organizations(settings: Any) -> None:
    settings.TRAINING_SCHEDULE_ORGANIZATIONS = ["nobody"]
    with pytest.raises(CommandError, match="unknown organizations: nobody"):
        run_command("setup_schedules")
    assert not Schedule.objects.exists()


def test_the_weekly_schedule_starts_a_run_through_django_q(
    organization: Organization, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.TRAINING_SCHEDULE_GLOBAL = False
    settings.TRAINING_SCHEDULE_ORGANIZATIONS = ["acme"]
    run_command("setup_schedules")
    Schedule.objects.filter(name=RESUME_SCHEDULE).delete()
    with django_capture_on_commit_callbacks(execute=True):
        run_due_schedules()
    run = TrainingRun.objects.get()
    assert run.organization == organization and run.triggered_by == TrainingRun.Trigger.SCHEDULE
    assert run.status == Status.TRAINING  # the chained tasks exported and created the job
    assert Schedule.objects.filter(name=weekly_schedule_name(organization)).exists()  # it repeats


# --- test_model ----------------------------------------------------------------------------------


def test_test_model_answers_with_a_registered_model(organization: Organization) -> None:
    run = drive(training_run_start(organization=organization, triggered_by="command", actor=None))
    model = run.registered_model
    assert model is not None
    prompt = "Write a message for: Industry=SaaS, Role=VP Sales"
    output = run_command("test_model", str(model.pk), "--prompt", prompt)
    assert output.startswith(f"v2.1.0 ({model.model_id}):\nSubject: ")


def test_test_model_reports_an_unknown_model() -> None:
    with pytest.raises(CommandError, match="No registered model"):
        run_command("test_model", "00000000-0000-0000-0000-000000000000", "--prompt", "hi")


def test_list_training_runs_shows_the_pools_runs_newest_first(organization: Organization) -> None:
    first = training_run_start(organization=organization, triggered_by="command", actor=None)
    TrainingRun.objects.filter(pk=first.pk).update(status=TrainingRun.Status.FAILED)
    second = training_run_start(organization=organization, triggered_by="command", actor=None)
    lines = run_command("list_training_runs", "--organization", organization.slug).splitlines()
    assert [line.split()[-1] for line in lines[1:]] == [str(second.pk), str(first.pk)]
    failed = run_command("list_training_runs", "--organization", organization.slug, "--status", "failed")
    assert str(first.pk) in failed and str(second.pk) not in failed
    assert run_command("list_training_runs").splitlines()[1:] == []  # the global pool has none
    with pytest.raises(CommandError, match="at least 1"):
        run_command("list_training_runs", "--limit", "0")
