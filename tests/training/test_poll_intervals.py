"""Each provider polls at its own interval, and an interval shorter than django-q2's scheduler is kept.

The chained task (``poll_run_when_due``) and django-q2's scheduler compete for each pending poll
row; whichever takes the row polls, the other finds it gone, so no poll is ever made twice.
"""

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from flywheel.models import Organization
from tests.training.helpers import make_labels, run_due_schedules
from training import tasks
from training.models import TrainingRun
from training.providers import provider_poll_interval
from training.providers.local import LocalProvider
from training.schedules import POLL_WHEN_DUE_TASK, poll_schedule, poll_schedule_name
from training.services import training_run_start

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("run_settings")]

OnCommit = Callable[..., AbstractContextManager[list[Callable[[], Any]]]]


class UndeclaredProvider(LocalProvider):
    """A provider that declares no poll interval of its own."""

    poll_interval = None


def training_run(organization: Organization, on_commit: OnCommit) -> TrainingRun:
    """A local run driven through django-q2 (sync mode) until its job is being polled."""
    make_labels(organization, positives=12)
    with on_commit(execute=True):
        run = training_run_start(organization=organization, triggered_by="command", actor=None)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.TRAINING, run.error
    return run


def queued_tasks() -> list[dict[str, Any]]:
    """The tasks waiting in django-q2's ORM queue, decoded."""
    return [SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("id")]


def pending_poll(run: TrainingRun) -> Schedule:
    return Schedule.objects.get(name=poll_schedule_name(run.pk))


def test_each_provider_declares_its_poll_interval_and_a_setting_overrides_one(settings: Any) -> None:
    assert [provider_poll_interval(name) for name in ("local", "openweights", "openai")] == [2.0, 10.0, 60.0]
    settings.TRAINING_POLL_INTERVALS = {"openai": 30}
    assert provider_poll_interval("openai") == 30.0 and provider_poll_interval("local") == 2.0
    settings.TRAINING_POLL_INTERVAL = 45
    assert provider_poll_interval(f"{__name__}.UndeclaredProvider") == 45.0


def test_the_environment_sets_intervals_per_provider() -> None:
    code = "from django.conf import settings; print(sorted(settings.TRAINING_POLL_INTERVALS.items()))"
    env = {**os.environ, "TRAINING_POLL_INTERVALS": "local=0.5,openai=30"}
    result = subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[('local', 0.5), ('openai', 30.0)]"


def test_a_local_run_is_polled_again_two_seconds_later(
    organization: Organization, django_capture_on_commit_callbacks: OnCommit
) -> None:
    run = training_run(organization, django_capture_on_commit_callbacks)
    wait = (pending_poll(run).next_run - timezone.now()).total_seconds()
    assert 0 < wait <= 2.0


def test_a_short_interval_is_chained_as_a_task_that_takes_the_poll_and_polls_once(
    organization: Organization, django_capture_on_commit_callbacks: OnCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = training_run(organization, django_capture_on_commit_callbacks)
    Schedule.objects.all().delete()
    monkeypatch.setattr(Conf, "SYNC", False)  # a real queue: the chained task waits in django-q2's table
    with django_capture_on_commit_callbacks(execute=True):
        assert poll_schedule(run_id=run.pk, provider="local")
    [task] = queued_tasks()
    first = pending_poll(run)
    assert (task["func"], task["args"]) == (POLL_WHEN_DUE_TASK, (str(run.pk), first.pk))

    Schedule.objects.update(next_run=timezone.now())  # due now: the task does not wait
    with django_capture_on_commit_callbacks(execute=True):
        tasks.poll_run_when_due(*task["args"])
    run.refresh_from_db()
    assert run.poll_count == 1
    assert pending_poll(run).pk != first.pk  # the next poll, chained in turn
    assert [queued["args"][1] for queued in queued_tasks()] == [first.pk, pending_poll(run).pk]

    assert tasks.poll_run_when_due(*task["args"]) is False  # the same task delivered twice
    run.refresh_from_db()
    assert run.poll_count == 1


def test_the_scheduler_and_the_chained_task_never_both_poll_one_row(
    organization: Organization, django_capture_on_commit_callbacks: OnCommit
) -> None:
    run = training_run(organization, django_capture_on_commit_callbacks)
    row = pending_poll(run)
    run_due_schedules()  # django-q2's scheduler takes the row first
    run.refresh_from_db()
    assert run.poll_count == 1

    assert tasks.poll_run_when_due(str(run.pk), row.pk) is False
    run.refresh_from_db()
    assert run.poll_count == 1


def test_a_run_that_stops_polling_leaves_its_chained_task_nothing_to_do(
    organization: Organization, django_capture_on_commit_callbacks: OnCommit
) -> None:
    run = training_run(organization, django_capture_on_commit_callbacks)
    row = pending_poll(run)
    Schedule.objects.filter(pk=row.pk).delete()  # what cancelling the run does
    assert tasks.poll_run_when_due(str(run.pk), row.pk) is False
    run.refresh_from_db()
    assert run.poll_count == 0
