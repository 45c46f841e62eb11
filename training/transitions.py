"""How a run's row changes: claim its step, move it on, end it and release what it holds.

Every change is one conditional UPDATE that matches only the state the caller expects (and, for a
claimed step, only while the claim is still this worker's), so a task delivered twice, a worker
that lost its lease or a run cancelled meanwhile changes nothing.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.utils import timezone

from flywheel.errors import ApplicationError
from registry.models import RegisteredModel
from registry.services import model_mark_failed
from training.models import TrainingRun
from training.providers import TERMINAL_STATUSES, FineTuningProvider, ProviderError
from training.schedules import poll_unschedule
from training.selectors import training_run_provider

logger = logging.getLogger(__name__)

Status = TrainingRun.Status
ModelStatus = RegisteredModel.Status

# A step runs for minutes at most (an export, an upload); a claim this old belongs to a dead worker.
STEP_LEASE = timedelta(minutes=30)
ENDED_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED})


@dataclass(frozen=True)
class Claim:
    """This worker's hold on one step of a run: the status it claimed and when."""

    status: str
    at: datetime


class Step(Protocol):
    """A step's work: done under ``claim``; True when it moved the run on."""

    def __call__(self, *, run: TrainingRun, claim: Claim) -> bool: ...


def run_claim_step(*, run: TrainingRun) -> Claim | None:
    """Claim the step of the status the run is in; None when another worker holds it or the run moved on.

    The conditional UPDATE is the lock: of two deliveries of the same task, one matches the row.
    A claim older than :data:`STEP_LEASE` is taken over (its worker crashed).
    """
    now = timezone.now()
    status = run.status
    claimed = (
        TrainingRun.objects.filter(pk=run.pk, status=status)
        .exclude(claimed_at__gte=now - STEP_LEASE)
        .update(claimed_at=now, updated_at=now)
    )
    run.refresh_from_db()
    return Claim(status, now) if claimed == 1 else None


def run_transition(
    *, run: TrainingRun, source: str, target: str | None = None, claim: Claim | None = None, **values: Any
) -> bool:
    """Write ``values`` and move the run to ``target`` if it is still in ``source``; True when it was.

    With ``claim``, only while this worker still holds the step, and moving on frees the claim.
    Without ``target`` the run stays where it is (a step records what it made, a poll what it
    read). Reaching an ended status stamps ``finished_at``. False when the run was cancelled,
    failed or taken over meanwhile: the caller then stops.
    """
    now = timezone.now()
    runs = TrainingRun.objects.filter(pk=run.pk, status=source)
    if claim is not None:
        runs = runs.filter(claimed_at=claim.at)
    if target is not None:
        values["status"] = target
        if claim is not None:
            values["claimed_at"] = None
        if target in ENDED_STATUSES:
            values["finished_at"] = now
    updated = runs.update(updated_at=now, **values)
    run.refresh_from_db()
    return updated == 1


def run_end(*, run: TrainingRun, status: str, error: str, claim: Claim | None = None) -> bool:
    """End an active run as failed or cancelled with ``error``, then release what it holds.

    With ``claim``, only while this worker still holds the step: a worker that lost its step
    (the lease expired and another took over) must not end the run under the new one. True
    when this call ended the run (a run already ended is left as it is).
    """
    now = timezone.now()
    runs = TrainingRun.objects.filter(pk=run.pk, status__in=TrainingRun.ACTIVE_STATUSES)
    if claim is not None:
        runs = runs.filter(status=claim.status, claimed_at=claim.at)
    ended = runs.update(status=status, error=error, claimed_at=None, finished_at=now, updated_at=now)
    run.refresh_from_db()
    if ended == 1:
        _release(run)
    return ended == 1


def run_release_if_ended(*, run: TrainingRun) -> None:
    """Release what a run that failed or was cancelled meanwhile still holds (a step that lost its run)."""
    if run.status in (Status.FAILED, Status.CANCELLED):
        _release(run)


def _release(run: TrainingRun) -> None:
    """Stop polling, cancel a job still running and fail the model the run registered, if any.

    Idempotent: each part checks first. The model is found by its lineage, not the run's foreign
    key, which a crash between registering and recording may have left empty.
    """
    poll_unschedule(run_id=run.pk)
    if run.provider_job_id and run.provider_status not in TERMINAL_STATUSES:
        provider_job_cancel(provider=training_run_provider(run=run), job_id=run.provider_job_id)
    model = RegisteredModel.objects.filter(training_run_id=run.pk).first()
    if model is not None and model.status in (ModelStatus.TRAINING, ModelStatus.READY, ModelStatus.DEPLOYED):
        try:
            model_mark_failed(model=model, error=f"Training run {run.status}: {run.error}"[:2000], actor=None)
        except ApplicationError as exc:
            logger.warning("Could not mark model %s failed: %s", model.pk, exc.message)


def provider_job_cancel(*, provider: FineTuningProvider, job_id: str) -> None:
    """Cancel a fine-tuning job; a provider that refuses is logged, not raised."""
    try:
        provider.cancel_job(job_id)
    except ProviderError as exc:
        logger.warning("Could not cancel fine-tuning job %s: %s", job_id, exc.message)
