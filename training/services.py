"""Training runs: start one, drive it step by step from outcome labels to a registered model, end it.

A run moves ``pending → exporting → uploading → training → registering → testing → (deploying) →
succeeded``, or ends ``skipped``, ``failed`` or ``cancelled``. Each step but polling is claimed and
moved on through :mod:`training.transitions`, records what it made as soon as it has it and skips
what is already recorded, so a step delivered twice or resumed after a crash does its work once.
"""

import logging
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from experiments.services import model_deploy_or_start_test
from flywheel.errors import ApplicationError, Conflict
from flywheel.models import Organization
from registry.models import RegisteredModel, pool_key
from registry.services import VERSION_PATTERN, Actor, actor_fields
from registry.serving import AdapterLoadFailed
from training.heartbeat import claim_heartbeat
from training.models import TrainingRun
from training.providers import JobInfo, ProviderError, get_provider
from training.schedules import ADVANCE_TASK, poll_schedule, poll_unschedule, resume_schedule_once
from training.selectors import pool_provider_name, provider_method_ensure, training_run_provider
from training.steps import step_export, step_register, step_test, step_upload, version_ensure_free
from training.transitions import (
    Claim,
    Step,
    claim_is_live,
    run_claim_step,
    run_end,
    run_release_if_ended,
    run_transition,
    step_lease,
)

logger = logging.getLogger(__name__)

Status = TrainingRun.Status
ModelStatus = RegisteredModel.Status

# An unclaimed run that has not moved for this long lost its task (a crash between two steps).
STALE_AFTER = timedelta(minutes=1)


# --- Starting ------------------------------------------------------------------------------------


def training_run_start(
    *,
    organization: Organization | None,
    model_version: str | None = None,
    min_quality_score: float = 0.6,
    deploy_immediately: bool = False,
    ab_test_percentage: float = 10.0,
    method: str = "sft",
    validation_percent: float = 0,
    force: bool = False,
    triggered_by: str,
    actor: Actor,
) -> TrainingRun:
    """Create a training run for ``organization`` (``None``: the global model) and enqueue it.

    It trains on the pool's provider, kept whatever changes later (a method it lacks: 400).
    Unless ``force``, a run on the pool's last successful dataset ends skipped. One run may be
    active per pool: a second start is a :class:`Conflict` (checked, and constrained in the database).
    """
    pool = pool_key(organization.pk if organization else None)
    _refuse_second_run(pool)
    parameters = {"min_quality_score": min_quality_score, "method": method, "validation_percent": validation_percent}
    run = TrainingRun(
        organization=organization,
        pool=pool,
        model_version=model_version or "",
        base_model=settings.TRAINING_BASE_MODEL,
        deploy_immediately=deploy_immediately,
        ab_test_percentage=ab_test_percentage,
        force=force,
        triggered_by=triggered_by,
        provider=pool_provider_name(organization=organization),
        **parameters,
        **actor_fields(actor),
    )
    _validate_new_run(run)
    _insert(run)
    transaction.on_commit(partial(enqueue_advance, run_id=run.pk))
    return run


def _refuse_second_run(pool: str) -> None:
    active = TrainingRun.objects.active().filter(pool=pool).first()
    if active is not None:
        raise Conflict(
            f"A training run is already {active.status} for this pool (run {active.pk}, started "
            f"{active.created_at:%Y-%m-%d %H:%M} UTC); wait for it to end or cancel it first.",
            details={"active_run_id": str(active.pk), "status": active.status},
        )


def _validate_new_run(run: TrainingRun) -> None:
    """Refuse out-of-range parameters, taken versions and the provider's missing methods, with clear messages."""
    errors: dict[str, str] = {}
    if not 0 <= run.min_quality_score <= 1:
        errors["min_quality_score"] = "Must be between 0 and 1."
    if not 0 < run.ab_test_percentage <= 100:
        errors["ab_test_percentage"] = "Must be above 0 and at most 100."
    if not 0 <= run.validation_percent < 100:
        errors["validation_percent"] = "Must be at least 0 and below 100."
    if run.model_version and not VERSION_PATTERN.match(run.model_version):
        errors["model_version"] = f"{run.model_version!r} is not a version like v2.1.0."
    if errors:
        raise ValidationError(errors)
    if run.model_version:
        version_ensure_free(organization_id=run.organization_id, version=run.model_version)
    # The constraints were checked above with clearer messages; a start that races past those
    # checks meets them in the database on insert, and gets a Conflict rather than a form error.
    run.full_clean(validate_constraints=False)
    provider_method_ensure(provider=run.provider, method=run.method)


def _insert(run: TrainingRun) -> None:
    """Insert the run; a start that raced past the checks meets the database's constraints."""
    try:
        with transaction.atomic():
            run.save(force_insert=True)
    except IntegrityError as exc:
        _refuse_second_run(run.pool)
        raise Conflict(f"Version {run.model_version} is already taken in this pool.") from exc


def schedule_weekly_training(
    *,
    organization: Organization | None = None,
    min_quality_score: float = 0.6,
    deploy_immediately: bool = False,
    ab_test_percentage: float = 10.0,
) -> TrainingRun | None:
    """The seed's weekly entry point: start a run for the pool, or None when one is still active.

    A run still going from last week is not an error for a schedule: it is logged, and the
    schedule does not fail (which would make django-q2 retry it).
    """
    try:
        return training_run_start(
            organization=organization,
            min_quality_score=min_quality_score,
            deploy_immediately=deploy_immediately,
            ab_test_percentage=ab_test_percentage,
            triggered_by=TrainingRun.Trigger.SCHEDULE,
            actor=None,
        )
    except Conflict as exc:
        logger.warning("Weekly training of %s not started: %s", organization or "the global pool", exc.message)
        return None


# --- Driving a run -------------------------------------------------------------------------------


def enqueue_advance(*, run_id: uuid.UUID | str) -> None:
    """Hand the run to a django-q2 worker (call it from ``transaction.on_commit``)."""
    async_task(ADVANCE_TASK, str(run_id))


def training_run_advance(*, run: TrainingRun) -> bool:
    """Take the run one step further (a poll while training); True when it moved.

    The django-q2 entry point: when the run moved and its next step is a worker's (not a wait
    for the provider), the next step is enqueued.
    """
    moved = training_run_poll(run=run) if run.status == Status.TRAINING else training_run_step(run=run)
    if moved and run.status in TrainingRun.ACTIVE_STATUSES and run.status != Status.TRAINING:
        transaction.on_commit(partial(enqueue_advance, run_id=run.pk))
    return moved


def training_run_step(*, run: TrainingRun) -> bool:
    """Perform the run's current step (never a poll); True when the run moved on.

    False when there is nothing to do: another worker holds the step, the run is training or
    has ended. A domain error (the provider's, the dataset's, the registry's) or any unexpected
    one raised while this worker holds the step ends the run as failed, with the message kept.
    """
    if run.status == Status.PENDING:  # the first step: nothing to claim yet, just begin
        run_transition(run=run, source=Status.PENDING, target=Status.EXPORTING, started_at=timezone.now())
    status = run.status
    step = STEPS.get(status)
    claim = run_claim_step(run=run) if step is not None else None
    if step is None or claim is None:
        return False
    try:
        with claim_heartbeat(run_id=run.pk, claim=claim):
            return step(run=run, claim=claim)
    except (ApplicationError, ValidationError) as exc:
        return run_end(run=run, status=Status.FAILED, error=error_message(exc), claim=claim)
    except Exception as exc:
        logger.exception("Training run %s failed while %s", run.pk, status)
        return run_end(run=run, status=Status.FAILED, error=f"Unexpected error while {status}: {exc!r}", claim=claim)


def error_message(exc: Exception) -> str:
    """The message of a domain error or of a Django ValidationError, for ``TrainingRun.error``."""
    if isinstance(exc, ApplicationError):
        return exc.message
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return str(exc)


# --- Polling the job -----------------------------------------------------------------------------


def training_run_poll(*, run: TrainingRun) -> bool:
    """Ask the provider about the run's job and record it; True when the run left ``training``.

    Rate limits, 5xx answers and timeouts (after the client's own retries) are noted on the run
    and polled again later; a job still running after ``TRAINING_MAX_WAIT`` is cancelled and the
    run fails (a job that ended meanwhile is still taken as it ended). While the job runs, the
    next poll is scheduled.
    """
    if run.status != Status.TRAINING:
        return False
    try:
        job, report = _job_report(run)
    except ProviderError as exc:
        if not exc.retryable or _waited_too_long(run):
            return run_end(run=run, status=Status.FAILED, error=exc.message)
        run_transition(run=run, source=Status.TRAINING, error=f"Last poll failed, will retry: {exc.message}")
        poll_schedule(run_id=run.pk, provider=run.provider)
        return False
    if not run_transition(run=run, source=Status.TRAINING, poll_count=F("poll_count") + 1, error="", **report):
        return False  # the run was cancelled while the provider answered
    if not job.is_terminal and _waited_too_long(run):
        waited = settings.TRAINING_MAX_WAIT
        error = f"The fine-tuning job did not finish within {waited} s (TRAINING_MAX_WAIT)."
        return run_end(run=run, status=Status.FAILED, error=error)
    return _after_poll(run, job)


def _waited_too_long(run: TrainingRun) -> bool:
    started = run.training_started_at or run.created_at
    return timezone.now() - started > timedelta(seconds=settings.TRAINING_MAX_WAIT)


def _job_report(run: TrainingRun) -> tuple[JobInfo, dict[str, Any]]:
    """The job and the columns a poll records: provider status, model, tokens, events, checkpoints, metrics."""
    provider = training_run_provider(run=run)
    job = provider.get_job(run.provider_job_id)
    events = [asdict(event) for event in provider.list_events(run.provider_job_id)]
    checkpoints = [asdict(checkpoint) for checkpoint in provider.list_checkpoints(run.provider_job_id)]
    report = {
        "metrics": provider.job_metrics(run.provider_job_id),
        "provider_status": job.status,
        "fine_tuned_model": job.fine_tuned_model or "",
        "trained_tokens": job.trained_tokens,
        "events": events,
        "checkpoints": checkpoints,
    }
    return job, report


def _after_poll(run: TrainingRun, job: JobInfo) -> bool:
    """Act on the job's state: register on success, end the run on failure or cancellation."""
    if job.status == "failed":
        return run_end(
            run=run, status=Status.FAILED, error=job.error or "The provider reports the fine-tuning job failed."
        )
    if job.status == "cancelled":
        return run_end(run=run, status=Status.CANCELLED, error="The fine-tuning job was cancelled at the provider.")
    if job.status != "succeeded":
        poll_schedule(run_id=run.pk, provider=run.provider)
        return False
    if not job.fine_tuned_model:
        return run_end(
            run=run, status=Status.FAILED, error="The provider reports success but names no fine-tuned model."
        )
    moved = run_transition(run=run, source=Status.TRAINING, target=Status.REGISTERING)
    poll_unschedule(run_id=run.pk)
    return moved


# --- Deploying, and the table of steps -----------------------------------------------------------


def _step_deploy(*, run: TrainingRun, claim: Claim) -> bool:
    """deploying → succeeded: start an A/B test of the new model at ``ab_test_percentage`` %.

    A refusal (nothing deployed to test against, a test already running) does not fail a good
    model: the run succeeds undeployed, with the reason in ``error``.
    """
    model = RegisteredModel.objects.filter(pk=run.registered_model_id).first() if run.registered_model_id else None
    if model is None:
        raise ApplicationError("The model this run registered no longer exists.")
    note = ""
    if model.status != ModelStatus.DEPLOYED:
        try:
            start_ab_test(model=model, percentage=run.ab_test_percentage, actor=run.actor_user, run=run)
        except (Conflict, AdapterLoadFailed) as exc:  # the model stays ready; deploy it once it can serve
            note = f"Not deployed: {exc.message}"
    if not run_transition(
        run=run, source=claim.status, target=Status.SUCCEEDED, claim=claim, deployed=not note, error=note
    ):
        run_release_if_ended(run=run)
        return False
    return True


def start_ab_test(*, model: RegisteredModel, percentage: float, actor: Actor, run: TrainingRun) -> None:
    """The one place a training run deploys its model: an A/B experiment against the pool's control.

    Through :func:`experiments.services.model_deploy_or_start_test`, so the test has its
    experiment row and is decided by the sequential test. Raises :class:`Conflict` when it is
    refused (no control deployed, a test already running).
    """
    reason = f"training run {run.pk}: A/B test at {percentage} %"
    model_deploy_or_start_test(
        model=model, traffic_percentage=percentage, actor=actor, reason=reason, require_test=True
    )


STEPS: dict[str, Step] = {
    Status.EXPORTING: step_export,
    Status.UPLOADING: step_upload,
    Status.REGISTERING: step_register,
    Status.TESTING: step_test,
    Status.DEPLOYING: _step_deploy,
}


# --- Cancelling, resuming, testing a model -------------------------------------------------------


def training_run_cancel(*, run: TrainingRun, actor: Actor = None, reason: str = "") -> TrainingRun:
    """Cancel an active run: its provider job is cancelled and no model of it stays ready.

    A worker in the middle of a step notices at its next conditional update and stops.
    """
    who = actor_fields(actor)["actor_label"]
    message = f"Cancelled by {who}" + (f": {reason}" if reason else ".")
    if not run_end(run=run, status=Status.CANCELLED, error=message):
        raise Conflict(f"This run is already {run.status}; only an active run can be cancelled.")
    return run


def training_runs_resume() -> int:
    """Re-deliver every active run whose task was lost; return how many were re-delivered.

    A training run gets a poll scheduled if none is pending. Any other run is enqueued when its
    worker died (a claim not renewed within the lease), or when it is unclaimed, not waiting to
    retry, and has not moved for :data:`STALE_AFTER` (a crash between steps). The schedule runs
    this every minute, and each worker runs it as it starts.
    """
    now = timezone.now()
    resumed = 0
    for run in TrainingRun.objects.active().order_by("created_at"):
        if run.status == Status.TRAINING:
            resumed += poll_schedule(run_id=run.pk, provider=run.provider)
        elif _lost(run, now):
            transaction.on_commit(partial(enqueue_advance, run_id=run.pk))
            resumed += 1
    return resumed


def training_runs_resume_when_leases_expire() -> datetime | None:
    """Schedule one more resume sweep for when every claim held now has expired, unless renewed.

    A worker starting after a crash finds its dead predecessor's claim still live; this sweep
    takes the step over as soon as it can be, rather than at the next minute's tick. Returns
    when it will run, or None when no claim is held.
    """
    now = timezone.now()
    held = [run for run in TrainingRun.objects.active().exclude(claimed_at=None) if claim_is_live(run=run, now=now)]
    if not held:
        return None
    at = max(max(run.claimed_at, run.heartbeat_at or run.claimed_at) for run in held if run.claimed_at)
    at += step_lease() + timedelta(seconds=1)
    resume_schedule_once(at=at)
    return at


def _lost(run: TrainingRun, now: datetime) -> bool:
    """Whether nobody will take the run's step further unless it is delivered again."""
    if run.claimed_at is not None:
        return not claim_is_live(run=run, now=now)
    waiting = run.retry_at is not None and run.retry_at > now
    return not waiting and run.updated_at < now - STALE_AFTER


def model_test(*, model: RegisteredModel, prompt: str, system_prompt: str | None = None) -> str:
    """Answer ``prompt`` with a registered model through its provider (the seed's ``test_model``)."""
    provider = get_provider(model.provider or None)
    return provider.complete(model.model_id, system_prompt or settings.TRAINING_SYSTEM_PROMPT, prompt)
