"""Loading a model's adapter before it takes traffic, and unloading it after it gave its traffic up.

A load runs inside the traffic change, under the pool's lock and before any row is written for
good: if the server does not load the adapter, the change is refused and rolled back, so traffic
never reaches a model the server cannot answer for. An unload runs after the change commits, in
a transaction of its own that re-checks the row: a failed unload never undoes the change, it is
logged and recorded on the row (``serving_status`` ``unload_failed``), and
:func:`serving_sync` retries it.
"""

import logging
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import transaction

from flywheel.errors import ApplicationError
from flywheel.models import Organization
from registry.models import RegisteredModel
from registry.serving import AdapterLoadFailed, ServingUnavailable, loading_providers, serving_for

logger = logging.getLogger(__name__)
ServingStatus = RegisteredModel.ServingStatus
ERROR_MAX_LENGTH = 2000


def adapter_load(model: RegisteredModel) -> dict[str, Any]:
    """Load ``model``'s adapter into its server; return the row's new serving columns.

    Nothing to do (an empty dict) for a provider without a load step. Raises
    :class:`~registry.serving.AdapterLoadFailed` (a 502, or 503 when the server is missing or
    unreachable) with the server's words when the load fails.
    """
    serving = serving_for(model.provider)
    if serving is None or serving.load is None:
        return {}
    try:
        loaded = serving.load(model.model_id)
    except ApplicationError as exc:
        # A server that is missing, unreachable or failing (retryable) is unavailable; one that refused, a bad gateway.
        unavailable = exc.code == "not_configured" or getattr(exc, "retryable", False)
        error = ServingUnavailable if unavailable else AdapterLoadFailed
        raise error(
            f"{model.model_version} cannot take traffic: its adapter {model.model_id} was not loaded. {exc.message}",
            details={"model_id": model.model_id, "provider": model.provider, "reason": exc.code},
        ) from exc
    if not loaded:
        return {}
    return {"serving_status": ServingStatus.LOADED, "serving_error": ""}


def adapter_unload_after_commit(model: RegisteredModel) -> None:
    """Unload ``model``'s adapter once the transaction that took its traffic away has committed."""
    serving = serving_for(model.provider)
    if serving is not None and serving.unload is not None:
        transaction.on_commit(partial(model_unload_adapter, model_pk=model.pk), robust=True)


def model_unload_adapter(*, model_pk: uuid.UUID) -> RegisteredModel | None:
    """Unload the adapter of a model that no longer serves; record how it went on the row.

    Under the row's lock, so a deploy of the same model that loads it again waits, and an
    unload never pulls an adapter from under a model that was deployed again meanwhile.
    Idempotent: the server counts an adapter that is not loaded as unloaded.
    """
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update(no_key=True).filter(pk=model_pk).first()
        serving = serving_for(model.provider) if model is not None else None
        if model is None or serving is None or serving.unload is None or model.status == model.Status.DEPLOYED:
            return model
        try:
            unloaded = serving.unload(model.model_id)
        except Exception as exc:  # whatever went wrong, the row says so and serving_sync retries
            logger.warning("Unloading adapter %s of %s failed: %s", model.model_id, model.model_version, exc)
            model.serving_status, model.serving_error = ServingStatus.UNLOAD_FAILED, str(exc)[:ERROR_MAX_LENGTH]
        else:
            status = ServingStatus.UNLOADED if unloaded else model.serving_status
            model.serving_status, model.serving_error = status, ""
        model.save(update_fields=["serving_status", "serving_error", "updated_at"])
        return model


@dataclass
class SyncCounts:
    """What :func:`serving_sync` did: adapters (re)loaded, unloaded, and still failing."""

    loaded: int = 0
    unloaded: int = 0
    failed: int = 0


def serving_sync(*, organization: Organization | None = None) -> SyncCounts:
    """Load every deployed model's adapter again and retry every failed unload.

    After a serving server restarts (it forgets its adapters) or an unload failed. Loads count
    an adapter already loaded as success; each model is handled in its own short transaction.
    """
    counts = SyncCounts()
    rows = RegisteredModel.objects.filter(provider__in=loading_providers())
    if organization is not None:
        rows = rows.filter(organization=organization)
    for pk in rows.deployed().values_list("pk", flat=True):
        try:
            counts.loaded += _reload(pk)
        except AdapterLoadFailed as exc:
            logger.warning("Loading an adapter again failed: %s", exc.message)
            counts.failed += 1
    failed = rows.exclude(status=RegisteredModel.Status.DEPLOYED).filter(serving_status=ServingStatus.UNLOAD_FAILED)
    for pk in failed.values_list("pk", flat=True):
        model = model_unload_adapter(model_pk=pk)
        done = model is not None and model.serving_status != ServingStatus.UNLOAD_FAILED
        counts.unloaded += done
        counts.failed += not done
    return counts


def _reload(pk: uuid.UUID) -> int:
    """Load a deployed model's adapter again, under its row lock; 1 when a server loaded it."""
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update(no_key=True).filter(pk=pk).first()
        if model is None or model.status != RegisteredModel.Status.DEPLOYED:
            return 0
        values = adapter_load(model)
        for name, value in values.items():
            setattr(model, name, value)
        model.save(update_fields=[*values, "updated_at"])
        return 1 if values else 0
