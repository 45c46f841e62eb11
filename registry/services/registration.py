"""Registering trained models and marking them ready or failed."""

import re
import uuid

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from flywheel.errors import Conflict
from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services.pool import (
    Action,
    Actor,
    PoolStep,
    Status,
    actor_fields,
    collect_events,
    lock_pool,
    lock_target,
)

VERSION_PATTERN = re.compile(r"^v\d+\.\d+\.\d+$")
TRAINING_STATS = ("training_examples_count", "positive_examples", "deals_in_training")


def _training_stats(stats: dict[str, int] | None) -> dict[str, int]:
    """The seed's three training statistics, refusing unknown keys and negative counts."""
    stats = dict(stats or {})
    unknown = sorted(set(stats) - set(TRAINING_STATS))
    if unknown:
        raise ValidationError({"training_stats": f"Unknown training statistics: {', '.join(unknown)}."})
    if any(int(value) < 0 for value in stats.values()):
        raise ValidationError({"training_stats": "Training statistics cannot be negative."})
    return {name: int(value) for name, value in stats.items()}


def _check_registration(*, model_version: str, status: str) -> None:
    """Refuse a version that is not ``vX.Y.Z`` and a status other than ready or training."""
    if not VERSION_PATTERN.match(model_version):
        raise ValidationError({"model_version": f"{model_version!r} is not a version like v2.1.0."})
    if status not in (Status.READY, Status.TRAINING):
        raise ValidationError({"status": "A model is registered as ready or training; deploy it afterwards."})


@transaction.atomic
def model_register(
    *,
    model_id: str,
    model_version: str,
    base_model: str,
    organization: Organization | None = None,
    provider: str = "",
    fine_tuning_job_id: str = "",
    training_run_id: uuid.UUID | None = None,
    dataset_sha256: str = "",
    adapter_sha256: str = "",
    base_model_config_sha256: str = "",
    training_stats: dict[str, int] | None = None,
    actor: Actor = None,
    status: str = Status.READY,
) -> RegisteredModel:
    """Register a trained model (``ready``, or ``training`` while its job runs).

    Idempotent for a training run: a resumed run that registers again gets the model it
    registered the first time, whatever else it passes. Open weights add the adapter's hashes.
    """
    existing = RegisteredModel.objects.filter(training_run_id=training_run_id).first() if training_run_id else None
    if existing is not None:
        return existing
    _check_registration(model_version=model_version, status=status)
    model = RegisteredModel(
        model_id=model_id,
        model_version=model_version,
        base_model=base_model,
        organization=organization,
        status=status,
        provider=provider,
        fine_tuning_job_id=fine_tuning_job_id,
        training_run_id=training_run_id,
        dataset_sha256=dataset_sha256,
        adapter_sha256=adapter_sha256,
        base_model_config_sha256=base_model_config_sha256,
        **_training_stats(training_stats),
    )
    return _insert_registered(model, actor=actor)


def _insert_registered(model: RegisteredModel, *, actor: Actor) -> RegisteredModel:
    """Validate and insert a model and its ``registered`` event.

    A concurrent registration of the same training run can win between validation and insert;
    the unique constraint catches it and the winner's row is returned.
    """
    model.full_clean()
    try:
        with transaction.atomic():
            model.save(force_insert=True)
    except IntegrityError:
        existing = RegisteredModel.objects.filter(training_run_id=model.training_run_id).first()
        if model.training_run_id is None or existing is None:
            raise
        return existing
    event = ModelEvent.objects.create(
        model=model,
        organization_id=model.organization_id,
        action=Action.REGISTERED,
        status_after=model.status,
        traffic_after=model.traffic_percentage,
        reason=f"{model.model_id} from {model.base_model}",
        **actor_fields(actor),
    )
    collect_events([event])
    return model


@transaction.atomic
def model_mark_ready(*, model: RegisteredModel, actor: Actor = None, reason: str = "") -> RegisteredModel:
    """Mark a model registered while training as ready to deploy."""
    deployed = lock_target(model, lock_pool(model.organization_id))
    if model.status != Status.TRAINING:
        raise Conflict(f"{model.model_version} is {model.status}, not training.")
    step = PoolStep(deployed, actor, reason)
    step.change(model, action=Action.REGISTERED, status=Status.READY, traffic=0.0, reason=reason or "training done")
    step.commit(moved_traffic=False)
    return model
