"""``POST /training/webhooks/openai``: OpenAI tells us a fine-tuning job ended; we poll it at once.

A plain Django view, not DRF: the body must reach the signature check byte for byte, and the
caller is OpenAI, not an API key. Polling stays the fallback, so a lost webhook only costs time.
Each delivery is acted on once, by its ``webhook-id``: a replay is acknowledged and ignored.
"""

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_q.tasks import async_task

from flywheel.errors import error_body
from training.models import TrainingRun, WebhookDelivery
from training.providers import ProviderError
from training.providers.openai import OpenAIProvider
from training.schedules import POLL_TASK

WEBHOOK_EVENTS = frozenset({"fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"})
# Far longer than the five minutes a signature is accepted for, so a replay always meets its id.
DELIVERY_RETENTION = timedelta(days=1)


@csrf_exempt
@require_POST
def openai_webhook(request: HttpRequest) -> JsonResponse:
    """Verify the Standard Webhooks signature, then advance the run whose job the event names.

    400 for a missing, wrong or stale signature (nothing changes); 503 when verification is not
    configured; 200 otherwise, also for jobs we do not know, event types we ignore and replays of
    a delivery already acted on, so OpenAI does not retry them.
    """
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        event = OpenAIProvider().unwrap_webhook(request.body, headers)
    except ProviderError as exc:
        status = 400 if exc.code == "invalid_signature" else 503
        return JsonResponse(error_body(exc.code, exc.message), status=status)
    with transaction.atomic():
        if not webhook_delivery_record(webhook_id=headers.get("webhook-id", "")):
            return JsonResponse({"received": True, "duplicate": True})
        run = training_run_handle_webhook(event=event)
    return JsonResponse({"received": True, "training_run_id": str(run.pk) if run is not None else None})


def webhook_delivery_record(*, webhook_id: str) -> bool:
    """Remember a verified delivery's id; False when it was seen before (a replay).

    The unique constraint decides between two copies arriving at once. Ids older than
    :data:`DELIVERY_RETENTION` are forgotten as new ones arrive.
    """
    WebhookDelivery.objects.filter(received_at__lt=timezone.now() - DELIVERY_RETENTION).delete()
    try:
        with transaction.atomic():
            WebhookDelivery.objects.create(webhook_id=webhook_id[:255])
    except IntegrityError:
        return False
    return True


def training_run_handle_webhook(*, event: Any) -> TrainingRun | None:
    """Poll at once the run whose job a verified ``fine_tuning.job.*`` webhook event names.

    The event only says *when* to look: the poll reads the job's state from the provider, so a
    replayed or out-of-order event changes nothing. Returns the run, or None for an unknown job
    or an event type that does not concern training.
    """
    kind, job_id = webhook_fields(event)
    if kind not in WEBHOOK_EVENTS or not job_id:
        return None
    run = TrainingRun.objects.filter(provider_job_id=job_id).first()
    if run is not None and run.status == TrainingRun.Status.TRAINING:
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
