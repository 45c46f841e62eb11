"""The django-q2 schedules of training: the weekly cycle, the resume sweep, each run's next poll or retry.

Schedule rows name their task by its dotted path, so the paths below never change: a renamed
task would leave existing schedules calling nothing.
"""

import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.tasks import async_task

from flywheel.models import Organization
from training.providers import provider_poll_interval

ADVANCE_TASK = "training.tasks.advance_run"
POLL_TASK = "training.tasks.poll_run"
WEEKLY_TASK = "training.tasks.weekly_training"
RESUME_TASK = "training.tasks.resume_stuck_runs"
POLL_WHEN_DUE_TASK = "training.tasks.poll_run_when_due"

WEEKLY_CRON = "0 2 * * 1"  # Mondays 02:00 UTC, the seed's cron line
WEEKLY_PREFIX = "training: weekly "
RESUME_SCHEDULE = "training: resume stuck runs"
RESUME_LATER_SCHEDULE = "training: resume when leases expire"
RESUME_EVERY_MINUTES = 1
# django-q2 1.11 looks at its schedules every 30 s of the cluster's guard loop (a constant in
# ``Cluster.guard``, whatever ``guard_cycle`` is): a poll due sooner is also chained as a task.
SCHEDULER_CADENCE = 30.0


# --- Weekly training and the resume sweep --------------------------------------------------------


def weekly_schedule_name(organization: Organization | None) -> str:
    return WEEKLY_PREFIX + (f"({organization.slug})" if organization else "(global)")


def next_weekly_run(now: datetime) -> datetime:
    """The next Monday 02:00 UTC after ``now`` (what ``0 2 * * 1`` fires on)."""
    moment = now.astimezone(UTC)
    candidate = (moment + timedelta(days=(-moment.weekday()) % 7)).replace(hour=2, minute=0, second=0, microsecond=0)
    return candidate if candidate > moment else candidate + timedelta(days=7)


def _weekly_timing() -> dict[str, Any]:
    """The seed's cron line, first due on the next Monday 02:00 UTC."""
    return {
        "schedule_type": Schedule.CRON,
        "cron": WEEKLY_CRON,
        "minutes": None,
        "next_run": next_weekly_run(timezone.now()),
    }


@transaction.atomic
def training_schedules_ensure(*, include_global: bool, organizations: list[Organization]) -> dict[str, int]:
    """Create or repair the weekly training schedules and the resume schedule; drop unwanted weekly ones.

    Idempotent, keyed by schedule name: running it twice changes nothing the second time.
    Returns how many schedules were created, updated and removed.
    """
    wanted: dict[str, str | None] = {weekly_schedule_name(org): repr(str(org.pk)) for org in organizations}
    if include_global:
        wanted[weekly_schedule_name(None)] = None
    counts = {"created": 0, "updated": 0, "removed": 0}
    timing = _weekly_timing()
    for name, args in wanted.items():
        defaults = {"func": WEEKLY_TASK, "args": args, "repeats": -1, **timing}
        counts["created" if _ensure_schedule(name, defaults) else "updated"] += 1
    resume = {
        "func": RESUME_TASK,
        "schedule_type": Schedule.MINUTES,
        "minutes": RESUME_EVERY_MINUTES,
        "repeats": -1,
        "next_run": timezone.now(),
    }
    counts["created" if _ensure_schedule(RESUME_SCHEDULE, resume) else "updated"] += 1
    unwanted = Schedule.objects.filter(name__startswith=WEEKLY_PREFIX).exclude(name__in=list(wanted))
    counts["removed"] = unwanted.delete()[0]
    return counts


def _ensure_schedule(name: str, defaults: dict[str, Any]) -> bool:
    """Create the named schedule or bring it to ``defaults``; True when it was created.

    An existing schedule keeps its ``next_run`` when its timing is unchanged, so re-running the
    command never delays (or repeats) a due run.
    """
    existing = Schedule.objects.filter(name=name).first()
    if existing is None:
        Schedule.objects.create(name=name, **defaults)
        return True
    same_timing = (existing.schedule_type, existing.cron, existing.minutes) == (
        defaults["schedule_type"],
        defaults.get("cron"),
        defaults.get("minutes"),
    )
    if same_timing:
        defaults = {key: value for key, value in defaults.items() if key != "next_run"}
    for key, value in defaults.items():
        setattr(existing, key, value)
    existing.save()
    return False


def resume_schedule_once(*, at: datetime) -> None:
    """Run the resume sweep once more at ``at`` (a ONCE schedule replacing any pending one)."""
    with transaction.atomic():
        Schedule.objects.filter(name=RESUME_LATER_SCHEDULE, next_run__gt=timezone.now()).delete()
        Schedule.objects.create(
            name=RESUME_LATER_SCHEDULE, func=RESUME_TASK, schedule_type=Schedule.ONCE, repeats=-1, next_run=at
        )


# --- A run's next poll ---------------------------------------------------------------------------


def poll_schedule_name(run_id: uuid.UUID | str) -> str:
    return f"training poll {run_id}"


def poll_schedule(*, run_id: uuid.UUID, provider: str) -> bool:
    """Schedule the run's next poll in the provider's poll interval, unless one is pending.

    A ONCE schedule, which django-q2 deletes once it has run: a new row per poll, so the row
    being executed is never the one rescheduled. An interval shorter than the scheduler's
    cadence would wait for its next look, so the poll is also enqueued at once as a task that
    waits until the row is due and takes it (:func:`poll_take_when_due`); whichever of the two
    takes the row polls, the other finds it gone. Returns whether a schedule was created.
    """
    now = timezone.now()
    name = poll_schedule_name(run_id)
    if Schedule.objects.filter(name=name, next_run__gt=now).exists():
        return False
    interval = provider_poll_interval(provider)
    schedule = Schedule.objects.create(
        name=name,
        func=POLL_TASK,
        args=repr(str(run_id)),
        schedule_type=Schedule.ONCE,
        repeats=-1,
        next_run=now + timedelta(seconds=interval),
    )
    if interval < SCHEDULER_CADENCE and not Conf.SYNC:  # in sync mode the wait would block the caller
        transaction.on_commit(partial(async_task, POLL_WHEN_DUE_TASK, str(run_id), schedule.pk))
    return True


def poll_take_when_due(*, run_id: uuid.UUID | str, schedule_id: int) -> bool:
    """Wait until the run's poll schedule ``schedule_id`` is due, then take it; True when taken.

    Taking is deleting the row: django-q2's scheduler reads due rows under ``select_for_update``
    and deletes a ONCE row it ran, so exactly one of it and this task gets each row. False when
    the row is gone (the scheduler ran it, or the run stopped polling). The wait is bounded by
    the scheduler's cadence: past it, the scheduler would have run the row anyway.
    """
    due = Schedule.objects.filter(pk=schedule_id).values_list("next_run", flat=True).first()
    if due is None:
        return False
    wait = (due - timezone.now()).total_seconds()
    if wait > 0:
        time.sleep(min(wait, SCHEDULER_CADENCE))
    return Schedule.objects.filter(pk=schedule_id, name=poll_schedule_name(run_id)).delete()[0] == 1


def poll_unschedule(*, run_id: uuid.UUID) -> None:
    """Drop the run's pending poll, if any."""
    Schedule.objects.filter(name=poll_schedule_name(run_id)).delete()


# --- A run's next try of a step ------------------------------------------------------------------


def retry_schedule_name(run_id: uuid.UUID | str) -> str:
    return f"training retry {run_id}"


def retry_schedule(*, run_id: uuid.UUID, at: datetime) -> None:
    """Deliver the run's step again at ``at``: a ONCE schedule replacing any pending one.

    The worker that failed is free meanwhile; nothing sleeps. A due row is left alone: it may be
    the one django-q2 is executing, which it deletes itself.
    """
    name = retry_schedule_name(run_id)
    with transaction.atomic():
        Schedule.objects.filter(name=name, next_run__gt=timezone.now()).delete()
        Schedule.objects.create(
            name=name, func=ADVANCE_TASK, args=repr(str(run_id)), schedule_type=Schedule.ONCE, repeats=-1, next_run=at
        )


def retry_unschedule(*, run_id: uuid.UUID) -> None:
    """Drop the run's pending retry, if any."""
    Schedule.objects.filter(name=retry_schedule_name(run_id)).delete()
