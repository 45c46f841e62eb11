"""What each step of a run does: export the dataset, upload it and create the job, register, test.

A step gets the run and this worker's claim on it, records what it made as soon as it has it
(through :func:`training.transitions.run_transition`, which refuses once the claim is lost) and
skips what is already recorded; what was made but not recorded (a crash, a lost answer) is found
again at the provider (:mod:`training.provisioning`), so no step uploads or creates a job twice.
"""

import contextlib
import dataclasses
import uuid
from pathlib import Path
from typing import Any, Literal, cast

from django.conf import settings
from django.utils import timezone

from flywheel.errors import Conflict
from registry.models import RegisteredModel
from registry.services import model_register
from training.datasets import ExportResult, OutcomeDataFormatter
from training.datasets.storage import dataset_local_copy, dataset_name, dataset_store, scratch_directory
from training.models import TrainingRun
from training.providers import FineTuningProvider, ProviderError, suffix_for
from training.providers.base import DEFAULT_HYPERPARAMETERS
from training.provisioning import provider_file_ensure, provider_job_ensure
from training.schedules import poll_schedule
from training.selectors import (
    last_succeeded_with_dataset,
    next_version,
    training_run_eligible_examples,
    training_run_provider,
    version_taken,
)
from training.transitions import Claim, provider_job_cancel, run_release_if_ended, run_retry_later, run_transition

Status = TrainingRun.Status

TEST_PROMPT = (
    "Write a message for: Industry=SaaS, Role=VP Sales, Company size=51-200, Framework=PAS, "
    "Tone=professional, Channel=email"
)
# Providers whose files never leave the project may read the exporter's per-example metadata
# (the local provider ranks its exemplars by quality); OpenAI refuses unknown keys.
METADATA_PROVIDERS = frozenset({"local"})


def version_ensure_free(*, organization_id: uuid.UUID | None, version: str, run_pk: uuid.UUID | None = None) -> None:
    """Refuse a version that names a registered model or another (non-failed) run of the pool."""
    if version_taken(organization_id=organization_id, version=version, run_pk=run_pk):
        raise Conflict(
            f"Version {version} is already taken in this pool; choose another or leave it empty to auto-increment."
        )


# --- Exporting: check the data, export, choose the version ---------------------------------------


def step_export(*, run: TrainingRun, claim: Claim) -> bool:
    """exporting → uploading, or → skipped when there are too few eligible examples."""
    eligible = training_run_eligible_examples(run=run)
    minimum = settings.TRAINING_MIN_EXAMPLES
    if eligible < minimum:
        what = {"dpo": "DPO pairs", "kto": "KTO examples"}.get(run.method, "positive examples")
        reason = (
            f"Only {eligible} eligible {what} (quality >= {run.min_quality_score}); at least {minimum} are "
            "needed (TRAINING_MIN_EXAMPLES)."
        )
        return run_transition(run=run, source=claim.status, target=Status.SKIPPED, claim=claim, error=reason)
    result = _export(run)
    unchanged = None if run.force else last_succeeded_with_dataset(run=run, digest=result.content_digest)
    if unchanged is not None:
        reason = (
            f"No new data since {unchanged.model_version}: the dataset's examples (digest "
            f"{result.content_digest[:12]}…) equal that run's. Force the run to train on them again."
        )
        fields = _dataset_fields(result)
        return run_transition(run=run, source=claim.status, target=Status.SKIPPED, claim=claim, error=reason, **fields)
    version = run.model_version or next_version(organization_id=run.organization_id)
    version_ensure_free(organization_id=run.organization_id, version=version, run_pk=run.pk)
    fields = _dataset_fields(result)
    return run_transition(
        run=run, source=claim.status, target=Status.UPLOADING, claim=claim, model_version=version, **fields
    )


def _export(run: TrainingRun) -> ExportResult:
    """Write the run's dataset in a scratch directory, then save it in the dataset storage.

    The result names the stored files (``training_data/<pool>/<run id>.jsonl``), not local paths,
    so that a worker on another machine can upload them.
    """
    with scratch_directory() as directory:
        result = OutcomeDataFormatter(model=run.base_model).export_to_jsonl(
            directory / f"{run.pk}.jsonl",
            organization_id=run.organization_id,
            min_quality_score=run.min_quality_score,
            method=cast(Literal["sft", "dpo", "kto"], run.method),
            validation_percent=run.validation_percent,
            include_metadata=run.provider in METADATA_PROVIDERS,
            n_epochs=DEFAULT_HYPERPARAMETERS["n_epochs"],
        )
        return _stored(run, result)


def _stored(run: TrainingRun, result: ExportResult) -> ExportResult:
    """The result with its files saved in the dataset storage and named by their storage names."""
    path = dataset_store(name=dataset_name(pool=run.pool, run_id=run.pk), local_path=Path(result.path))
    validation = ""
    if result.validation_path:
        name = dataset_name(pool=run.pool, run_id=run.pk, validation=True)
        validation = dataset_store(name=name, local_path=Path(result.validation_path))
    return dataclasses.replace(result, path=path, validation_path=validation)


def _dataset_fields(result: ExportResult) -> dict[str, Any]:
    return {
        "dataset_path": result.path,
        "validation_path": result.validation_path,
        "dataset_sha256": result.sha256,
        "dataset_digest": result.content_digest,
        "examples_count": result.count,
        "validation_examples_count": result.validation_count,
        "positive_examples": result.positive_examples,
        "deals_in_training": result.deals_in_training,
        "total_tokens": result.total_tokens,
        "billed_tokens": result.billed_tokens,
        "estimated_cost": result.estimated_cost,
    }


# --- Uploading: upload the files, create the job -------------------------------------------------


def step_upload(*, run: TrainingRun, claim: Claim) -> bool:
    """uploading → training: refuse a base model near shutdown, upload, create the job, start polling.

    A retryable provider error frees the step and brings it back later (see
    :func:`training.transitions.run_retry_later`); what was made before is found again, not redone.
    """
    provider = training_run_provider(run=run)
    try:
        job_id = run.provider_job_id or _provision(run, claim, provider)
    except ProviderError as exc:
        if not exc.retryable:
            raise
        return run_retry_later(run=run, claim=claim, error=exc)
    if not job_id:
        return False
    started = run.training_started_at or timezone.now()
    moved = run_transition(
        run=run,
        source=claim.status,
        target=Status.TRAINING,
        claim=claim,
        provider_job_id=job_id,
        training_started_at=started,
        error="",
    )
    if not moved:
        if not run.is_active:
            # The run ended meanwhile: a job nobody polls must not keep running. (A run taken over
            # by another worker keeps it: that worker finds and adopts the same job.)
            provider_job_cancel(provider=provider, job_id=job_id)
        return False
    poll_schedule(run_id=run.pk, provider=run.provider)
    return True


def _provision(run: TrainingRun, claim: Claim, provider: FineTuningProvider) -> str:
    """Upload the files and create the job, each unless it exists; the job id, or "" once the claim is lost."""
    provider.check_base_model(run.base_model)
    if not _upload_files(run, claim, provider):
        return ""
    return provider_job_ensure(provider=provider, run=run, request=_job_request(run))


def _upload_files(run: TrainingRun, claim: Claim, provider: FineTuningProvider) -> bool:
    """Upload the training (and validation) file unless already uploaded; record each id at once."""
    if not run.provider_file_id:
        file_id = _upload_stored(run, provider, kind="train", name=run.dataset_path)
        if not run_transition(run=run, source=claim.status, claim=claim, provider_file_id=file_id):
            return False
    if run.validation_path and not run.provider_validation_file_id:
        file_id = _upload_stored(run, provider, kind="validation", name=run.validation_path)
        if not run_transition(run=run, source=claim.status, claim=claim, provider_validation_file_id=file_id):
            return False
    return True


def _upload_stored(run: TrainingRun, provider: FineTuningProvider, *, kind: str, name: str) -> str:
    """Upload a dataset read back through the storage API (see :func:`provider_file_ensure`)."""
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(dataset_local_copy(name))
        except OSError as exc:
            raise ProviderError(f"Cannot read training file {name}: {exc}", code="file_unreadable") from exc
        return provider_file_ensure(provider=provider, run=run, kind=kind, path=path)


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


# --- Registering and testing ---------------------------------------------------------------------


def step_register(*, run: TrainingRun, claim: Claim) -> bool:
    """registering → testing: register the fine-tuned model as ready, with its lineage."""
    model = _register(run)
    if not run_transition(run=run, source=claim.status, target=Status.TESTING, claim=claim, registered_model=model):
        run_release_if_ended(run=run)  # a cancel that came before the model existed could not fail it
        return False
    return True


def _register(run: TrainingRun) -> RegisteredModel:
    """:func:`registry.services.model_register`; a resumed run gets the model registered before.

    An adapter's manifest (open weights) names the base model it was trained on and hashes.
    """
    adapter = training_run_provider(run=run).adapter_info(run.fine_tuned_model)
    return model_register(
        model_id=run.fine_tuned_model,
        model_version=run.model_version,
        base_model=str(adapter.get("base_model_name") or run.base_model),
        adapter_sha256=str(adapter.get("sha256") or ""),
        base_model_config_sha256=str(adapter.get("base_model_config_sha256") or ""),
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


def step_test(*, run: TrainingRun, claim: Claim) -> bool:
    """testing → deploying or succeeded: answer the sample prompt with the new model."""
    output = training_run_provider(run=run).complete(run.fine_tuned_model, settings.TRAINING_SYSTEM_PROMPT, TEST_PROMPT)
    following = Status.DEPLOYING if run.deploy_immediately else Status.SUCCEEDED
    if not run_transition(run=run, source=claim.status, target=following, claim=claim, test_output=output):
        run_release_if_ended(run=run)
        return False
    return True
