"""Reads of training runs: the run's answer, the runs a caller may see, versions, examples, shutdowns.

The run's answer is built here once: the API serializes all of it and ``run_training_cycle``
prints the seed's part of it; the admin reads its provider dates here too.
"""

import hashlib
import re
import uuid
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.models import QuerySet

from flywheel.auth import KeyPrincipal
from flywheel.errors import ApplicationError, Conflict
from flywheel.models import Organization
from registry.models import RegisteredModel, pool_key
from training.datasets import dataset_counts
from training.models import TrainingRun
from training.providers import (
    FineTuningProvider,
    JobInfo,
    ProviderError,
    default_provider_name,
    get_provider,
    provider_names,
)

Status = TrainingRun.Status

FIRST_VERSION = (2, 1, 0)
VERSION_NUMBERS = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
# Runs that keep their version: a failed or cancelled run leaves its version free for the next one.
KEPT_VERSION_STATUSES = [*TrainingRun.ACTIVE_STATUSES, Status.SUCCEEDED]
SHUTDOWN_CACHE_SECONDS = 6 * 3600
SHUTDOWN_UNKNOWN_SECONDS = 600
JOB_CACHE_SECONDS = 10
ENDED_JOB_CACHE_SECONDS = 3600
UNKNOWN = "unknown"
# Which of ``dataset_counts`` an export of each method writes: KTO takes positives and matured negatives.
METHOD_COUNTS = {"sft": "sft", "dpo": "dpo", "kto": "sft_outcome_conditioned"}


# --- The run's answer ----------------------------------------------------------------------------


def training_run_result(*, run: TrainingRun) -> dict[str, Any]:
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


def training_run_answer(*, run: TrainingRun) -> dict[str, Any]:
    """The run as the API shows it: the seed's result plus the run's parameters, state and times.

    The values are Python's (UUIDs, datetimes); :class:`training.serializers.TrainingRunSerializer`
    describes and renders them.
    """
    return {
        **training_run_result(run=run),
        "id": run.pk,
        "run_status": run.status,
        "organization_id": run.organization_id,
        "method": run.method,
        "provider": run.provider,
        "metrics": run.metrics,
        "min_quality_score": run.min_quality_score,
        "force": run.force,
        "deploy_immediately": run.deploy_immediately,
        "ab_test_percentage": run.ab_test_percentage,
        "triggered_by": run.triggered_by,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


# --- Which runs, which provider, when a base model shuts down ------------------------------------


def training_runs_visible(*, user: Any) -> QuerySet[TrainingRun]:
    """The runs a caller may see: its organization's for an API key, every run for staff."""
    if isinstance(user, KeyPrincipal):
        return TrainingRun.objects.filter(organization_id=user.organization.pk)
    return TrainingRun.objects.all()


def training_run_visible_get(*, user: Any, run_id: str) -> TrainingRun | None:
    """The run with this id if the caller may see it; None for an unknown, foreign or malformed id."""
    try:
        return training_runs_visible(user=user).filter(pk=run_id).first()
    except ValidationError:  # not a UUID
        return None


def training_run_of_job(*, user: Any, job_id: str) -> TrainingRun | None:
    """The visible run that started the provider's job ``job_id``, if any."""
    return training_runs_visible(user=user).filter(provider_job_id=job_id).exclude(provider_job_id="").first()


def pool_provider_name(*, organization: Organization | None) -> str:
    """The provider that trains the pool: the organization's choice, else ``FINE_TUNING_PROVIDER``.

    The one place a pool's provider is resolved; the global pool (``None``) always takes the
    setting. A run records the name at its start, so a later change leaves it on its provider.
    """
    chosen = organization.training_provider if organization is not None else ""
    return chosen or default_provider_name()


def provider_get(*, name: str) -> FineTuningProvider:
    """The provider called ``name``; 409 when it cannot be loaded (a pool's choice since removed)."""
    try:
        return get_provider(name)
    except ImproperlyConfigured as exc:
        raise Conflict(
            f"This pool's training provider {name!r} cannot be used ({exc}); choose one of "
            f"{', '.join(provider_names())} on the organization's admin page.",
            code="provider_unavailable",
            details={"provider": name, "providers": provider_names()},
        ) from exc


def provider_methods(*, provider: str) -> list[str]:
    """The run methods ``provider`` trains with, in :class:`TrainingRun.Method` order."""
    supported = provider_get(name=provider).supported_methods
    return [method for method in TrainingRun.Method.values if method in supported]


def provider_method_ensure(*, provider: str, method: str) -> None:
    """Refuse with a 400 saying why, and what to do, a run method ``provider`` cannot train with."""
    supported = provider_methods(provider=provider)
    if method in supported:
        return
    others = [other for other in provider_names() if other != provider and _supports(other, method)]
    switch = f", or switch the pool's training provider to {' or '.join(others)}" if others else ""
    raise ApplicationError(
        f"This pool trains on the {provider} provider, which cannot train with method {method!r} "
        f"(it supports {', '.join(supported)}). Choose one of those{switch}.",
        code="unsupported_method",
        details={
            "method": method,
            "provider": provider,
            "supported_methods": supported,
            "providers_supporting": others,
        },
    )


def _supports(name: str, method: str) -> bool:
    try:
        return method in get_provider(name).supported_methods
    except ImproperlyConfigured:
        return False


def provider_wind_down_notice(*, provider: str) -> str:
    """What an operator must know about a pool on ``provider``: OpenAI's wind-down dates, else ""."""
    if provider != "openai":
        return ""
    # Imported only for an OpenAI pool: the module loads the openai client.
    from training.providers.openai import FINE_TUNED_MODELS_SHUTDOWN, FINE_TUNING_JOBS_END, WIND_DOWN_BASE_MODELS

    return (
        f"OpenAI stops new fine-tuning jobs on {FINE_TUNING_JOBS_END.isoformat()} and shuts down "
        f"{' and '.join(WIND_DOWN_BASE_MODELS)} and their fine-tunes on {FINE_TUNED_MODELS_SHUTDOWN.isoformat()}. "
        "Switch this pool's training provider to openweights on the organization's admin page: "
        "its next run trains there, and its OpenAI models keep serving until the shutdown."
    )


def provider_reports_loss(*, provider: str) -> bool:
    """Whether runs on ``provider`` measure losses (``local`` does not: it trains no network)."""
    try:
        return get_provider(provider or None).reports_loss
    except ImproperlyConfigured:
        return True


def training_run_provider(*, run: TrainingRun) -> FineTuningProvider:
    """The provider that runs this run's job (chosen at its start, whatever the setting says now)."""
    return get_provider(run.provider or None)


def training_run_job(*, run: TrainingRun) -> JobInfo:
    """The provider's answer about the run's job, cached so that callers cannot make it ask on every call.

    Keyed by provider and job id, for ``TRAINING_JOB_CACHE_SECONDS`` (10) while the job runs and
    ``TRAINING_ENDED_JOB_CACHE_SECONDS`` (an hour) once it has ended; errors are not cached.
    """
    key = "training:job:" + hashlib.sha256(f"{run.provider}:{run.provider_job_id}".encode()).hexdigest()
    cached = cache.get(key)
    if cached is not None:
        return JobInfo(**cached)
    job = training_run_provider(run=run).get_job(run.provider_job_id)
    if job.is_terminal:
        seconds = getattr(settings, "TRAINING_ENDED_JOB_CACHE_SECONDS", ENDED_JOB_CACHE_SECONDS)
    else:
        seconds = getattr(settings, "TRAINING_JOB_CACHE_SECONDS", JOB_CACHE_SECONDS)
    cache.set(key, asdict(job), seconds)
    return job


def base_model_shutdown_text(*, provider: str, model: str) -> str:
    """The provider's shutdown date of a base model as text: a date, "none announced" or "unknown".

    Cached (six hours; ten minutes when the provider could not answer), so a list of runs asks the
    provider once per base model, and an unreachable provider does not slow every page.
    """
    key = f"training:shutdown:{provider}:{model}"
    cached = cache.get(key)
    if cached is not None:
        return str(cached)
    try:
        shutdown = get_provider(provider).base_model_shutdown_date(model)
    except (ProviderError, ValueError):
        cache.set(key, UNKNOWN, SHUTDOWN_UNKNOWN_SECONDS)
        return UNKNOWN
    text = shutdown.isoformat() if shutdown else "none announced"
    cache.set(key, text, SHUTDOWN_CACHE_SECONDS)
    return text


# --- Versions and examples -----------------------------------------------------------------------


def next_version(*, organization_id: uuid.UUID | None) -> str:
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


def version_taken(*, organization_id: uuid.UUID | None, version: str, run_pk: uuid.UUID | None = None) -> bool:
    """Whether ``version`` names a registered model or another (non-failed) run of the pool."""
    if RegisteredModel.objects.in_pool(organization_id).filter(model_version=version).exists():
        return True
    runs = TrainingRun.objects.filter(
        pool=pool_key(organization_id), model_version=version, status__in=KEPT_VERSION_STATUSES
    )
    if run_pk is not None:
        runs = runs.exclude(pk=run_pk)
    return runs.exists()


def last_succeeded_with_dataset(*, run: TrainingRun, digest: str) -> TrainingRun | None:
    """The pool's last successful run, if its dataset_digest is ``digest``; else None.

    Only the last success counts: data that changed and then came back is new to the model.
    """
    last = (
        TrainingRun.objects.filter(pool=run.pool, status=TrainingRun.Status.SUCCEEDED)
        .exclude(pk=run.pk)
        .order_by("-finished_at", "-created_at")
        .first()
    )
    return last if last is not None and digest and last.dataset_digest == digest else None


def training_default_organization(*, user: Any) -> Organization | None:
    """The pool a person's training form starts on: the organization they last trained, else the first one.

    Users belong to no organization here, so the last run they started tells; the global pool is
    never the default, only a choice (None only when no organization exists).
    """
    last = (
        TrainingRun.objects.filter(actor_user_id=getattr(user, "pk", None), organization__isnull=False)
        .select_related("organization")
        .order_by("-created_at")
        .first()
    )
    return last.organization if last is not None else Organization.objects.order_by("name", "pk").first()


def training_run_eligible_examples(*, run: TrainingRun) -> int:
    """How many examples the run's export would write (positives for SFT, pairs for DPO, both classes for KTO)."""
    counts = dataset_counts(run.organization_id, run.min_quality_score)
    return counts[METHOD_COUNTS.get(run.method, "sft")]


def training_runs_list(
    *, organization: Organization | None, status: str = "", limit: int = 20
) -> QuerySet[TrainingRun]:
    """A pool's runs (``None``: the global pool's), newest first, optionally of one status."""
    runs = (
        TrainingRun.objects.filter(organization=organization)
        if organization
        else TrainingRun.objects.filter(organization__isnull=True)
    )
    if status:
        runs = runs.filter(status=status)
    return runs.order_by("-created_at")[:limit]
