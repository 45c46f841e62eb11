"""django-q2 entry points of training: they take ids, load rows and call :mod:`training.services`.

The state of a run lives in ``TrainingRun.status``, never only in the queue: a task delivered
twice, late, or for a run that has ended since does nothing.
"""

import logging
from typing import Any

from flywheel.models import Organization
from training.models import TrainingRun
from training.schedules import poll_take_when_due
from training.services import (
    schedule_weekly_training,
    training_run_advance,
    training_runs_resume,
    training_runs_resume_when_leases_expire,
)

logger = logging.getLogger(__name__)


def advance_run(run_id: str) -> bool:
    """Take the run one step further (enqueued by the previous step); True when it moved."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:
        logger.warning("Training run %s no longer exists; nothing to advance.", run_id)
        return False
    return training_run_advance(run=run)


def poll_run(run_id: str) -> bool:
    """Poll the run's fine-tuning job (from its ONCE schedule or a webhook); True when the run moved."""
    run = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.TRAINING).first()
    return training_run_advance(run=run) if run is not None else False


def poll_run_when_due(run_id: str, schedule_id: int) -> bool:
    """Poll the run when its poll schedule is due, if this task takes it (a short interval's chain)."""
    return poll_run(run_id) if poll_take_when_due(run_id=run_id, schedule_id=schedule_id) else False


def weekly_training(organization_id: str | None = None) -> str | None:
    """The weekly schedule's task: start a run for the organization (or the global pool).

    Returns the new run's id, or None when the pool still has an active run or the organization
    is gone.
    """
    organization = None
    if organization_id is not None:
        organization = Organization.objects.filter(pk=organization_id).first()
        if organization is None:
            logger.warning("Weekly training skipped: organization %s no longer exists.", organization_id)
            return None
    run = schedule_weekly_training(organization=organization)
    return str(run.pk) if run is not None else None


def resume_stuck_runs() -> int:
    """Re-deliver runs whose task was lost (a crash between steps); return how many."""
    return training_runs_resume()


def resume_when_a_worker_starts(sender: Any = None, proc_name: str = "", **kwargs: Any) -> int:
    """django-q2's ``post_spawn`` receiver: the resume sweep now and when the claims held expire; never raises."""
    try:
        resumed = training_runs_resume()
        training_runs_resume_when_leases_expire()
        return resumed
    except Exception:
        logger.exception("Resuming training runs as worker %s started failed", proc_name)
        return 0
