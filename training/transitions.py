"""How a run's row changes: claim its step, renew or defer the claim, move the run on, end it.

Every change is one conditional UPDATE that matches only the state the caller expects (and, for a
claimed step, only while the claim is still this worker's), so a task delivered twice, a worker
that lost its lease or a run cancelled meanwhile changes nothing.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone

from flywheel.errors import ApplicationError
from registry.models import RegisteredModel
from registry.services import model_mark_failed
from training.models import TrainingRun
from training.providers import TERMINAL_STATUSES, FineTuningProvider, ProviderError
from training.schedules import poll_unschedule, retry_schedule, retry_unschedule
from training.selectors import training_run_provider

logger = logging.getLogger(__name__)

Status = TrainingRun.Status
ModelStatus = RegisteredModel.Status

# A claim not renewed for this long belongs to a dead worker (the heartbeat renews it every quarter).
STEP_LEASE = timedelta(seconds=60)
# Waits between tries of a provider call that failed in a way worth retrying: about 16 minutes in all.
RETRY_DELAYS = (15, 30, 60, 120, 240, 240, 240)
ENDED_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED})


@dataclass(frozen=True)
class Claim:
    """This worker's hold on one step of a run: the status it claimed and when."""

    status: str
    at: datetime


class Step(Protocol):
    """A step's work: done under ``claim``; True when it moved the run on."""

    def __call__(self, *, run: TrainingRun, claim: Claim) -> bool: ...


def step_lease() -> timedelta:
    """How long a claim lives without renewal: ``TRAINING_STEP_LEASE`` seconds, else :data:`STEP_LEASE`."""
    seconds = getattr(settings, "TRAINING_STEP_LEASE", None)
    return timedelta(seconds=seconds) if seconds is not None else STEP_LEASE


def claim_is_live(*, run: TrainingRun, now: datetime) -> bool:
    """Whether a worker holds the run's step: claimed, and claimed or renewed within the lease."""
    if run.claimed_at is None:
        return False
    return max(run.claimed_at, run.heartbeat_at or run.claimed_at) >= now - step_lease()


def run_claim_step(*, run: TrainingRun) -> Claim | None:
    """Claim the step of the status the run is in; None when another worker holds it or the run moved on.

    The conditional UPDATE is the lock: of two deliveries of the same task, one matches the row.
    A claim neither made nor renewed within the lease is taken over (its worker died); a step
    waiting to retry a provider call is not claimed before its ``retry_at``.
    """
    now = timezone.now()
    cutoff = now - step_lease()
    status = run.status
    claimed = (
        TrainingRun.objects.filter(pk=run.pk, status=status)
        .exclude(claimed_at__gte=cutoff)
        .exclude(heartbeat_at__gte=cutoff)
        .exclude(retry_at__gt=now)
        .update(claimed_at=now, heartbeat_at=None, updated_at=now)
    )
    run.refresh_from_db()
    return Claim(status, now) if claimed == 1 else None


def run_claim_renew(*, run_id: Any, claim: Claim) -> bool:
    """Renew this worker's claim (the heartbeat); False once the claim is no longer ours."""
    renewed = TrainingRun.objects.filter(pk=run_id, status=claim.status, claimed_at=claim.at)
    return renewed.update(heartbeat_at=timezone.now()) == 1


def run_retry_later(*, run: TrainingRun, claim: Claim, error: ProviderError) -> bool:
    """Free the claimed step and schedule its next try after the next of ``TRAINING_RETRY_DELAYS``.

    Raises ``error`` when every delay has been waited (the caller then fails the run). Returns
    False: the run did not move on.
    """
    delays = tuple(getattr(settings, "TRAINING_RETRY_DELAYS", RETRY_DELAYS))
    if run.step_retries >= len(delays):
        raise error
    delay = delays[run.step_retries]
    retry_at = timezone.now() + timedelta(seconds=delay)
    note = f"Try {run.step_retries + 1} failed, retrying in {delay} s: {error.message}"
    deferred = run_transition(
        run=run,
        source=claim.status,
        claim=claim,
        claimed_at=None,
        heartbeat_at=None,
        step_retries=run.step_retries + 1,
        retry_at=retry_at,
        error=note,
    )
    if deferred:
        retry_schedule(run_id=run.pk, at=retry_at)
    return False


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
        values.update(status=target, step_retries=0, retry_at=None)
        if claim is not None:
            values.update(claimed_at=None, heartbeat_at=None)
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
    ended = runs.update(
        status=status, error=error, claimed_at=None, heartbeat_at=None, retry_at=None, finished_at=now, updated_at=now
    )
    run.refresh_from_db()
    if ended == 1:
        _release(run)
    return ended == 1


def run_release_if_ended(*, run: TrainingRun) -> None:
    """Release what a run that failed or was cancelled meanwhile still holds (a step that lost its run)."""
    if run.status in (Status.FAILED, Status.CANCELLED):
        _release(run)


def _release(run: TrainingRun) -> None:
    """Stop polling and retrying, cancel the run's jobs still running and fail the model it registered.

    Idempotent: each part checks first. The model is found by its lineage, not the run's foreign
    key, which a crash between registering and recording may have left empty.
    """
    poll_unschedule(run_id=run.pk)
    retry_unschedule(run_id=run.pk)
    _cancel_jobs(run)
    model = RegisteredModel.objects.filter(training_run_id=run.pk).first()
    if model is not None and model.status in (ModelStatus.TRAINING, ModelStatus.READY, ModelStatus.DEPLOYED):
        try:
            model_mark_failed(model=model, error=f"Training run {run.status}: {run.error}"[:2000], actor=None)
        except ApplicationError as exc:
            logger.warning("Could not mark model %s failed: %s", model.pk, exc.message)


def _cancel_jobs(run: TrainingRun) -> None:
    """Cancel the run's recorded job, or any job the provider holds for it that was never recorded.

    A worker that died while creating the job may have left one at the provider: once the files
    were uploaded, the provider is asked for the run's jobs.
    """
    if run.provider_job_id:
        if run.provider_status not in TERMINAL_STATUSES:
            provider_job_cancel(provider=training_run_provider(run=run), job_id=run.provider_job_id)
        return
    if not run.provider_file_id:
        return
    provider = training_run_provider(run=run)
    try:
        unrecorded = provider.find_jobs(run_id=str(run.pk))
    except ProviderError as exc:
        logger.warning("Could not look up the jobs of run %s: %s", run.pk, exc.message)
        return
    for job in unrecorded:
        if not job.is_terminal:
            provider_job_cancel(provider=provider, job_id=job.id)


def provider_job_cancel(*, provider: FineTuningProvider, job_id: str) -> None:
    """Cancel a fine-tuning job; a provider that refuses is logged, not raised."""
    try:
        provider.cancel_job(job_id)
    except ProviderError as exc:
        logger.warning("Could not cancel fine-tuning job %s: %s", job_id, exc.message)
