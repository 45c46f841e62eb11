"""Training runs: the seed's weekly cycle, from outcome labels to a registered (and maybe deployed) model.

**The steps.** A run moves ``pending → exporting → uploading → training → registering → testing
→ (deploying) → succeeded``, or ends ``skipped`` (too few examples), ``failed`` or ``cancelled``:

1. *exporting*: check there are ``TRAINING_MIN_EXAMPLES`` eligible examples (else ``skipped``),
   export them with :class:`training.datasets.OutcomeDataFormatter`, then pick the version;
2. *uploading*: refuse a base model near its shutdown, upload the file(s), create the job;
3. *training*: django-q2 polls the job every ``TRAINING_POLL_INTERVAL`` seconds through a ONCE
   :class:`~django_q.models.Schedule` (no worker ever sleeps); a webhook only polls sooner;
4. *registering*: :func:`registry.services.model_register`, idempotent per run;
5. *testing*: ``complete()`` on a sample prompt; 6. *deploying* (when asked): an A/B test.

**Claims.** Every step except polling starts with a conditional UPDATE that sets ``claimed_at``
on a run in the step's status whose claim is free (or older than :data:`STEP_LEASE`, its worker
having crashed), and ends with one that moves the status on only if the claim is still this
worker's. A task delivered twice therefore does the work once; a worker that crashed leaves a
claim that the next delivery (or :func:`training_runs_resume`) takes over after the lease. Each
step records what it made as soon as it has it (provider file ids, the job id) and skips what is
already recorded, so a resumed step never uploads, creates a job or registers twice. Provider
calls happen outside transactions.

**Endings.** A failure keeps the provider's own message in ``error``; a failed or cancelled run
leaves no ready model (the model it registered, if any, is marked failed) and no running job.
"""

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from experiments.services import model_deploy_or_start_test
from flywheel.errors import ApplicationError, Conflict
from flywheel.models import Organization
from registry.models import RegisteredModel, pool_key
from registry.services import (
    VERSION_PATTERN,
    Actor,
    actor_fields,
    model_mark_failed,
    model_register,
)
from training.datasets import ExportResult, OutcomeDataFormatter, dataset_counts
from training.models import TrainingRun
from training.providers import TERMINAL_STATUSES, FineTuningProvider, JobInfo, ProviderError, get_provider, suffix_for
from training.providers.base import DEFAULT_HYPERPARAMETERS

logger = logging.getLogger(__name__)

Status = TrainingRun.Status
ModelStatus = RegisteredModel.Status

# A step runs for minutes at most (an export, an upload); a claim this old belongs to a dead worker.
STEP_LEASE = timedelta(minutes=30)
# An unclaimed run that has not moved for this long lost its task (a crash between two steps).
STALE_AFTER = timedelta(minutes=5)
FIRST_VERSION = (2, 1, 0)
TEST_PROMPT = (
    "Write a message for: Industry=SaaS, Role=VP Sales, Company size=51-200, Framework=PAS, "
    "Tone=professional, Channel=email"
)
ADVANCE_TASK = "training.tasks.advance_run"
POLL_TASK = "training.tasks.poll_run"
WEEKLY_TASK = "training.tasks.weekly_training"
RESUME_TASK = "training.tasks.resume_stuck_runs"
ENDED_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED})
KEPT_VERSION_STATUSES = [*TrainingRun.ACTIVE_STATUSES, Status.SUCCEEDED]
# Providers whose files never leave the project may read the exporter's per-example metadata
# (the local provider ranks its exemplars by quality); OpenAI refuses unknown keys.
METADATA_PROVIDERS = frozenset({"local"})
WEBHOOK_EVENTS = frozenset({"fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"})
VERSION_NUMBERS = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


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
    triggered_by: str,
    actor: Actor,
) -> TrainingRun:
    """Create a training run for ``organization`` (``None``: the global model) and enqueue it.

    One run may be active per pool: a second start is refused with :class:`Conflict`, by a
    check for a clear message and by the database constraint for two starts that race.
    """
    pool = pool_key(organization.pk if organization else None)
    _refuse_second_run(pool)
    run = TrainingRun(
        organization=organization,
        pool=pool,
        model_version=model_version or "",
        base_model=settings.TRAINING_BASE_MODEL,
        min_quality_score=min_quality_score,
        method=method,
        deploy_immediately=deploy_immediately,
        ab_test_percentage=ab_test_percentage,
        validation_percent=validation_percent,
        triggered_by=triggered_by,
        provider=settings.FINE_TUNING_PROVIDER or "local",
        **actor_fields(actor),
    )
    _validate_new_run(run)
    _insert(run)
    transaction.on_commit(partial(enqueue_advance, run.pk))
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
    """Refuse out-of-range parameters and taken versions with messages a person can act on."""
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
        _ensure_version_free(run.organization_id, run.model_version)
    # The constraints were checked above with clearer messages; a start that races past those
    # checks meets them in the database on insert, and gets a Conflict rather than a form error.
    run.full_clean(validate_constraints=False)


def _insert(run: TrainingRun) -> None:
    """Insert the run; a start that raced past the checks meets the database's constraints."""
    try:
        with transaction.atomic():
            run.save(force_insert=True)
    except IntegrityError as exc:
        _refuse_second_run(run.pool)
        raise Conflict(f"Version {run.model_version} is already taken in this pool.") from exc


def _ensure_version_free(organization_id: uuid.UUID | None, version: str, *, run_pk: uuid.UUID | None = None) -> None:
    """Refuse a version that names a registered model or another (non-failed) run of the pool."""
    registered = RegisteredModel.objects.in_pool(organization_id).filter(model_version=version).exists()
    runs = TrainingRun.objects.filter(
        pool=pool_key(organization_id), model_version=version, status__in=KEPT_VERSION_STATUSES
    )
    if run_pk is not None:
        runs = runs.exclude(pk=run_pk)
    if registered or runs.exists():
        raise Conflict(
            f"Version {version} is already taken in this pool; choose another or leave it empty to auto-increment."
        )


def next_version(organization_id: uuid.UUID | None) -> str:
    """The pool's next version: the highest one with its minor number bumped (v2.1.0 → v2.2.0).

    Counts registered models and runs that kept their version; the first version of a pool is
    v2.1.0, as in the seed's timeline.
    """
    versions = list(RegisteredModel.objects.in_pool(organization_id).values_list("model_version", flat=True))
    versions += TrainingRun.objects.filter(
        pool=pool_key(organization_id), status__in=KEPT_VERSION_STATUSES
    ).values_list("model_version", flat=True)
    numbers = [tuple(int(part) for part in match.groups()) for match in map(VERSION_NUMBERS.match, versions) if match]
    if not numbers:
        return "v{}.{}.{}".format(*FIRST_VERSION)
    major, minor, _ = max(numbers)
    return f"v{major}.{minor + 1}.0"


def schedule_weekly_training(
    organization: Organization | None = None,
    *,
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


def enqueue_advance(run_id: uuid.UUID | str) -> None:
    """Hand the run to a django-q2 worker (call it from ``transaction.on_commit``)."""
    async_task(ADVANCE_TASK, str(run_id))


def training_run_advance(run: TrainingRun) -> bool:
    """Take the run one step further (a poll while training); True when it moved.

    The django-q2 entry point: when the run moved and its next step is a worker's (not a wait
    for the provider), the next step is enqueued.
    """
    moved = training_run_poll(run) if run.status == Status.TRAINING else training_run_step(run)
    if moved and run.status in TrainingRun.ACTIVE_STATUSES and run.status != Status.TRAINING:
        transaction.on_commit(partial(enqueue_advance, run.pk))
    return moved


@dataclass(frozen=True)
class Claim:
    """This worker's hold on one step of a run: the status it claimed and when."""

    status: str
    at: datetime


def training_run_step(run: TrainingRun) -> bool:
    """Perform the run's current step (never a poll); True when the run moved on.

    False when there is nothing to do: another worker holds the step, the run is training or
    has ended. A domain error (the provider's, the dataset's, the registry's) or any unexpected
    one raised while this worker holds the step ends the run as failed, with the message kept.
    """
    if run.status == Status.PENDING:  # the first step: nothing to claim yet, just begin
        _move(run, Status.PENDING, Status.EXPORTING, started_at=timezone.now())
    status = run.status
    step = STEPS.get(status)
    claim = _claim(run, status) if step is not None else None
    if step is None or claim is None:
        return False
    try:
        return step(run, claim)
    except (ApplicationError, ValidationError) as exc:
        return _end(run, Status.FAILED, error_message(exc), claim=claim)
    except Exception as exc:
        logger.exception("Training run %s failed while %s", run.pk, status)
        return _end(run, Status.FAILED, f"Unexpected error while {status}: {exc!r}", claim=claim)


def error_message(exc: Exception) -> str:
    """The message of a domain error or of a Django ValidationError, for ``TrainingRun.error``."""
    if isinstance(exc, ApplicationError):
        return exc.message
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return str(exc)


def _claim(run: TrainingRun, status: str) -> Claim | None:
    """Claim the run's step in ``status``; None when another worker holds it or the run moved on.

    The conditional UPDATE is the lock: of two deliveries of the same task, one matches the row.
    A claim older than :data:`STEP_LEASE` is taken over (its worker crashed).
    """
    now = timezone.now()
    claimed = (
        TrainingRun.objects.filter(pk=run.pk, status=status)
        .exclude(claimed_at__gte=now - STEP_LEASE)
        .update(claimed_at=now, updated_at=now)
    )
    run.refresh_from_db()
    return Claim(status, now) if claimed == 1 else None


def _commit(run: TrainingRun, claim: Claim, status: str | None = None, **values: Any) -> bool:
    """Record the step's results (and move to ``status``) if this worker still holds the claim.

    False when the run was cancelled, failed or taken over meanwhile: the caller then stops.
    """
    now = timezone.now()
    if status is not None:
        values.update(status=status, claimed_at=None)
        if status in ENDED_STATUSES:
            values["finished_at"] = now
    updated = TrainingRun.objects.filter(pk=run.pk, status=claim.status, claimed_at=claim.at).update(
        updated_at=now, **values
    )
    run.refresh_from_db()
    return updated == 1


def _update_if(run: TrainingRun, current: str, **values: Any) -> bool:
    """Write ``values`` if the run is (still) in status ``current``; False when it is not."""
    updated = TrainingRun.objects.filter(pk=run.pk, status=current).update(updated_at=timezone.now(), **values)
    run.refresh_from_db()
    return updated == 1


def _move(run: TrainingRun, source: str, target: str, **values: Any) -> bool:
    """Move an unclaimed run from ``source`` to ``target``; False when it was not in ``source``."""
    if target in ENDED_STATUSES:
        values["finished_at"] = timezone.now()
    return _update_if(run, source, status=target, **values)


def _provider(run: TrainingRun) -> FineTuningProvider:
    """The provider that runs this run's job (chosen at its start, whatever the setting says now)."""
    return get_provider(run.provider or None)


# --- Step 1-3: check the data, export, version ---------------------------------------------------


def _step_export(run: TrainingRun, claim: Claim) -> bool:
    """exporting → uploading, or → skipped when there are too few eligible examples."""
    eligible = eligible_examples(run)
    minimum = settings.TRAINING_MIN_EXAMPLES
    if eligible < minimum:
        what = "DPO pairs" if run.method == TrainingRun.Method.DPO else "positive examples"
        reason = (
            f"Only {eligible} eligible {what} (quality >= {run.min_quality_score}); at least {minimum} are "
            "needed (TRAINING_MIN_EXAMPLES)."
        )
        return _commit(run, claim, Status.SKIPPED, error=reason)
    result = _export(run)
    version = run.model_version or next_version(run.organization_id)
    _ensure_version_free(run.organization_id, version, run_pk=run.pk)
    return _commit(run, claim, Status.UPLOADING, model_version=version, **_dataset_fields(result))


def eligible_examples(run: TrainingRun) -> int:
    """How many examples the run's export would write (positives for SFT, pairs for DPO)."""
    counts = dataset_counts(run.organization_id, run.min_quality_score)
    return counts["dpo" if run.method == TrainingRun.Method.DPO else "sft"]


def _export(run: TrainingRun) -> ExportResult:
    """Write the run's dataset under ``TRAINING_DATA_DIR/<pool>/<run id>.jsonl`` (atomically)."""
    path = Path(settings.TRAINING_DATA_DIR) / run.pool / f"{run.pk}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return OutcomeDataFormatter(model=run.base_model).export_to_jsonl(
        path,
        organization_id=run.organization_id,
        min_quality_score=run.min_quality_score,
        method=cast(Literal["sft", "dpo"], run.method),
        validation_percent=run.validation_percent,
        include_metadata=run.provider in METADATA_PROVIDERS,
        n_epochs=DEFAULT_HYPERPARAMETERS["n_epochs"],
    )


def _dataset_fields(result: ExportResult) -> dict[str, Any]:
    return {
        "dataset_path": result.path,
        "validation_path": result.validation_path,
        "dataset_sha256": result.sha256,
        "examples_count": result.count,
        "validation_examples_count": result.validation_count,
        "positive_examples": result.positive_examples,
        "deals_in_training": result.deals_in_training,
        "total_tokens": result.total_tokens,
        "billed_tokens": result.billed_tokens,
        "estimated_cost": result.estimated_cost,
    }


# --- Step 4-5: upload, create the job ------------------------------------------------------------


def _step_upload(run: TrainingRun, claim: Claim) -> bool:
    """uploading → training: refuse a base model near shutdown, upload, create the job, start polling."""
    provider = _provider(run)
    created = ""
    if not run.provider_job_id:
        provider.check_base_model(run.base_model)
        if not _upload_files(run, claim, provider):
            return False
        created = provider.create_job(**_job_request(run))
    job_id = run.provider_job_id or created
    started = run.training_started_at or timezone.now()
    if not _commit(run, claim, Status.TRAINING, provider_job_id=job_id, training_started_at=started):
        if created:
            # The run ended or was taken over meanwhile: a job nobody polls must not keep running.
            _cancel_job(provider, created)
        return False
    _schedule_poll(run)
    return True


def _upload_files(run: TrainingRun, claim: Claim, provider: FineTuningProvider) -> bool:
    """Upload the training (and validation) file unless already uploaded; record each id at once."""
    if not run.provider_file_id:
        file_id = provider.upload_training_file(run.dataset_path)
        if not _commit(run, claim, provider_file_id=file_id):
            return False
    if run.validation_path and not run.provider_validation_file_id:
        file_id = provider.upload_training_file(run.validation_path)
        if not _commit(run, claim, provider_validation_file_id=file_id):
            return False
    return True


def _job_request(run: TrainingRun) -> dict[str, Any]:
    """The ``create_job`` arguments: the seed's hyperparameters, suffix and our lineage as metadata."""
    organization = run.organization
    return {
        "training_file": run.provider_file_id,
        "validation_file": run.provider_validation_file_id or None,
        "model": run.base_model,
        "suffix": suffix_for(run.model_version),
        "method": run.method,
        "hyperparameters": None,
        "metadata": {
            "training_run_id": str(run.pk),
            "organization_id": str(organization.pk) if organization else "global",
            "organization": organization.slug if organization else "global",
            "model_version": run.model_version,
        },
    }


# --- Step 6: poll --------------------------------------------------------------------------------


def training_run_poll(run: TrainingRun) -> bool:
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
            return _end(run, Status.FAILED, exc.message)
        _update_if(run, Status.TRAINING, error=f"Last poll failed, will retry: {exc.message}")
        _schedule_poll(run)
        return False
    if not _update_if(run, Status.TRAINING, poll_count=F("poll_count") + 1, error="", **report):
        return False  # the run was cancelled while the provider answered
    if not job.is_terminal and _waited_too_long(run):
        waited = settings.TRAINING_MAX_WAIT
        return _end(run, Status.FAILED, f"The fine-tuning job did not finish within {waited} s (TRAINING_MAX_WAIT).")
    return _after_poll(run, job)


def _waited_too_long(run: TrainingRun) -> bool:
    started = run.training_started_at or run.created_at
    return timezone.now() - started > timedelta(seconds=settings.TRAINING_MAX_WAIT)


def _job_report(run: TrainingRun) -> tuple[JobInfo, dict[str, Any]]:
    """The job and the columns a poll records: provider status, model, tokens, events, checkpoints."""
    provider = _provider(run)
    job = provider.get_job(run.provider_job_id)
    events = [asdict(event) for event in provider.list_events(run.provider_job_id)]
    checkpoints = [asdict(checkpoint) for checkpoint in provider.list_checkpoints(run.provider_job_id)]
    report = {
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
        return _end(run, Status.FAILED, job.error or "The provider reports the fine-tuning job failed.")
    if job.status == "cancelled":
        return _end(run, Status.CANCELLED, "The fine-tuning job was cancelled at the provider.")
    if job.status != "succeeded":
        _schedule_poll(run)
        return False
    if not job.fine_tuned_model:
        return _end(run, Status.FAILED, "The provider reports success but names no fine-tuned model.")
    moved = _move(run, Status.TRAINING, Status.REGISTERING)
    _unschedule_poll(run)
    return moved


def poll_schedule_name(run_id: uuid.UUID | str) -> str:
    return f"training poll {run_id}"


def _schedule_poll(run: TrainingRun) -> bool:
    """Schedule the run's next poll in ``TRAINING_POLL_INTERVAL`` seconds, unless one is pending.

    A ONCE schedule, which django-q2 deletes once it has run: a new row per poll, so the row
    being executed is never the one rescheduled. Returns whether a schedule was created.
    """
    now = timezone.now()
    name = poll_schedule_name(run.pk)
    if Schedule.objects.filter(name=name, next_run__gt=now).exists():
        return False
    Schedule.objects.create(
        name=name,
        func=POLL_TASK,
        args=repr(str(run.pk)),
        schedule_type=Schedule.ONCE,
        repeats=-1,
        next_run=now + timedelta(seconds=settings.TRAINING_POLL_INTERVAL),
    )
    return True


def _unschedule_poll(run: TrainingRun) -> None:
    Schedule.objects.filter(name=poll_schedule_name(run.pk)).delete()


# --- Step 7-9: register, test, deploy ------------------------------------------------------------


def _step_register(run: TrainingRun, claim: Claim) -> bool:
    """registering → testing: register the fine-tuned model as ready, with its lineage."""
    model = _register(run)
    if not _commit(run, claim, Status.TESTING, registered_model=model):
        _release_if_ended(run)  # a cancel that came before the model existed could not fail it
        return False
    return True


def _register(run: TrainingRun) -> RegisteredModel:
    """:func:`registry.services.model_register`; a resumed run gets the model registered before."""
    return model_register(
        model_id=run.fine_tuned_model,
        model_version=run.model_version,
        base_model=run.base_model,
        organization=run.organization,
        provider=run.provider,
        fine_tuning_job_id=run.provider_job_id,
        training_run_id=run.pk,
        dataset_sha256=run.dataset_sha256,
        training_stats={
            "training_examples_count": run.examples_count,
            "positive_examples": run.positive_examples,
            "deals_in_training": run.deals_in_training,
        },
        actor=run.actor_user,
    )


def _step_test(run: TrainingRun, claim: Claim) -> bool:
    """testing → deploying or succeeded: answer the sample prompt with the new model."""
    output = _provider(run).complete(run.fine_tuned_model, settings.TRAINING_SYSTEM_PROMPT, TEST_PROMPT)
    following = Status.DEPLOYING if run.deploy_immediately else Status.SUCCEEDED
    if not _commit(run, claim, following, test_output=output):
        _release_if_ended(run)
        return False
    return True


def _step_deploy(run: TrainingRun, claim: Claim) -> bool:
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
        except Conflict as exc:
            note = f"Not deployed: {exc.message}"
    if not _commit(run, claim, Status.SUCCEEDED, deployed=not note, error=note):
        _release_if_ended(run)
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


STEPS: dict[str, Callable[[TrainingRun, Claim], bool]] = {
    Status.EXPORTING: _step_export,
    Status.UPLOADING: _step_upload,
    Status.REGISTERING: _step_register,
    Status.TESTING: _step_test,
    Status.DEPLOYING: _step_deploy,
}


# --- Ending: failure, cancellation, clean-up -----------------------------------------------------


def _end(run: TrainingRun, status: str, message: str, *, claim: Claim | None = None) -> bool:
    """End an active run as failed or cancelled with ``message``, then release what it holds.

    With ``claim``, only while this worker still holds the step: a worker that lost its step
    (the lease expired and another took over) must not end the run under the new one. True
    when this call ended the run (a run already ended is left as it is).
    """
    now = timezone.now()
    runs = TrainingRun.objects.filter(pk=run.pk, status__in=TrainingRun.ACTIVE_STATUSES)
    if claim is not None:
        runs = runs.filter(status=claim.status, claimed_at=claim.at)
    ended = runs.update(status=status, error=message, claimed_at=None, finished_at=now, updated_at=now)
    run.refresh_from_db()
    if ended == 1:
        _release(run)
    return ended == 1


def _release_if_ended(run: TrainingRun) -> None:
    if run.status in (Status.FAILED, Status.CANCELLED):
        _release(run)


def _release(run: TrainingRun) -> None:
    """Stop polling, cancel a job still running and fail the model the run registered, if any.

    Idempotent: each part checks first. The model is found by its lineage, not the run's foreign
    key, which a crash between registering and recording may have left empty.
    """
    _unschedule_poll(run)
    if run.provider_job_id and run.provider_status not in TERMINAL_STATUSES:
        _cancel_job(_provider(run), run.provider_job_id)
    model = RegisteredModel.objects.filter(training_run_id=run.pk).first()
    if model is not None and model.status in (ModelStatus.TRAINING, ModelStatus.READY, ModelStatus.DEPLOYED):
        try:
            model_mark_failed(model=model, error=f"Training run {run.status}: {run.error}"[:2000], actor=None)
        except ApplicationError as exc:
            logger.warning("Could not mark model %s failed: %s", model.pk, exc.message)


def _cancel_job(provider: FineTuningProvider, job_id: str) -> None:
    try:
        provider.cancel_job(job_id)
    except ProviderError as exc:
        logger.warning("Could not cancel fine-tuning job %s: %s", job_id, exc.message)


def training_run_cancel(*, run: TrainingRun, actor: Actor = None, reason: str = "") -> TrainingRun:
    """Cancel an active run: its provider job is cancelled and no model of it stays ready.

    A worker in the middle of a step notices at its next conditional update and stops.
    """
    who = actor_fields(actor)["actor_label"]
    message = f"Cancelled by {who}" + (f": {reason}" if reason else ".")
    if not _end(run, Status.CANCELLED, message):
        raise Conflict(f"This run is already {run.status}; only an active run can be cancelled.")
    return run


# --- Webhooks, resuming --------------------------------------------------------------------------


def training_run_handle_webhook(event: Any) -> TrainingRun | None:
    """Poll at once the run whose job a verified ``fine_tuning.job.*`` webhook event names.

    The event only says *when* to look: the poll reads the job's state from the provider, so a
    replayed or out-of-order event changes nothing. Returns the run, or None for an unknown job
    or an event type that does not concern training.
    """
    kind, job_id = webhook_fields(event)
    if kind not in WEBHOOK_EVENTS or not job_id:
        return None
    run = TrainingRun.objects.filter(provider_job_id=job_id).first()
    if run is not None and run.status == Status.TRAINING:
        run_id = str(run.pk)
        transaction.on_commit(lambda: async_task(POLL_TASK, run_id))
    return run


def webhook_fields(event: Any) -> tuple[str, str]:
    """The type of a webhook event and the id of the object it concerns (as parsed, or a dict)."""
    if isinstance(event, dict):
        data = event.get("data") or {}
        return str(event.get("type") or ""), str(data.get("id") or "") if isinstance(data, dict) else ""
    data = getattr(event, "data", None)
    return str(getattr(event, "type", "") or ""), str(getattr(data, "id", "") or "")


def training_runs_resume() -> int:
    """Re-deliver every active run whose task was lost; return how many were re-delivered.

    A training run gets a poll scheduled if none is pending. Any other run is enqueued when no
    live claim holds it and it has not moved for :data:`STALE_AFTER` (a crash between steps, or
    a claim whose worker died). The schedule runs this every few minutes.
    """
    now = timezone.now()
    resumed = 0
    for run in TrainingRun.objects.active().order_by("created_at"):
        if run.status == Status.TRAINING:
            resumed += _schedule_poll(run)
            continue
        claimed = run.claimed_at is not None and run.claimed_at >= now - STEP_LEASE
        if not claimed and run.updated_at < now - STALE_AFTER:
            transaction.on_commit(partial(enqueue_advance, run.pk))
            resumed += 1
    return resumed


# --- Schedules ---------------------------------------------------------------------------------

WEEKLY_CRON = "0 2 * * 1"  # Mondays 02:00 UTC, the seed's cron line
WEEKLY_PREFIX = "training: weekly "
RESUME_SCHEDULE = "training: resume stuck runs"
RESUME_EVERY_MINUTES = 10


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
    resume = {"func": RESUME_TASK, "schedule_type": Schedule.MINUTES, "minutes": RESUME_EVERY_MINUTES, "repeats": -1}
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


# --- Results and the seed's test_model -----------------------------------------------------------


def training_run_result(run: TrainingRun) -> dict[str, Any]:
    """The seed's ``run_training_cycle`` answer for a run, whatever its state.

    ``status`` is the seed's "success" for a succeeded run and the run's own status otherwise;
    ``error`` carries the reason of a skipped, failed or cancelled run (or why a model was not
    deployed).
    """
    return {
        "status": "success" if run.status == Status.SUCCEEDED else run.status,
        "run_id": str(run.pk),
        "model_id": run.fine_tuned_model or None,
        "model_version": run.model_version or None,
        "registry_id": str(run.registered_model_id) if run.registered_model_id else None,
        "job_id": run.provider_job_id or None,
        "training_stats": {
            "training_examples_count": run.examples_count,
            "validation_examples_count": run.validation_examples_count,
            "positive_examples": run.positive_examples,
            "deals_in_training": run.deals_in_training,
            "total_tokens": run.total_tokens,
            "trained_tokens": run.trained_tokens,
            "estimated_cost": str(run.estimated_cost),
        },
        "training_duration_seconds": run.training_duration_seconds,
        "deployed": run.deployed,
        "error": run.error or None,
    }


def model_test(*, model: RegisteredModel, prompt: str, system_prompt: str | None = None) -> str:
    """Answer ``prompt`` with a registered model through its provider (the seed's ``test_model``)."""
    provider = get_provider(model.provider or None)
    return provider.complete(model.model_id, system_prompt or settings.TRAINING_SYSTEM_PROMPT, prompt)
