"""``POST /training/webhooks/openai``: OpenAI tells us a fine-tuning job ended; we poll it at once.

A plain Django view, not DRF: the body must reach the signature check byte for byte, and the
caller is OpenAI, not an API key. Polling stays the fallback, so a lost webhook only costs time.
"""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from flywheel.errors import error_body
from training.providers import ProviderError
from training.providers.openai import OpenAIProvider
from training.services import training_run_handle_webhook


@csrf_exempt
@require_POST
def openai_webhook(request: HttpRequest) -> JsonResponse:
    """Verify the Standard Webhooks signature, then advance the run whose job the event names.

    400 for a missing, wrong or stale signature (nothing changes); 503 when verification is not
    configured; 200 otherwise, also for jobs we do not know and event types we ignore, so OpenAI
    does not retry them.
    """
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        event = OpenAIProvider().unwrap_webhook(request.body, headers)
    except ProviderError as exc:
        status = 400 if exc.code == "invalid_signature" else 503
        return JsonResponse(error_body(exc.code, exc.message), status=status)
    run = training_run_handle_webhook(event)
    return JsonResponse({"received": True, "training_run_id": str(run.pk) if run is not None else None})
