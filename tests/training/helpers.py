"""Helpers for the training-run tests: labels worth training on, django-q2 driving, signed webhooks."""

import base64
import datetime
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Schedule, Task
from django_q.scheduler import scheduler

from flywheel.models import Organization
from outcomes.models import OutcomeLabel
from tests.outcomes.factories import OutcomeLabelFactory, reached
from training.models import TrainingRun
from training.services import training_run_advance

POSITIVE = "delivered opened replied meeting_booked"  # quality 0.7


def make_labels(organization: Organization | None, *, positives: int = 12, negatives: int = 0) -> list[OutcomeLabel]:
    """Create ``positives`` labels above the 0.6 quality bar and ``negatives`` matured low scorers."""
    owner = organization or Organization.objects.create(name="Global", slug="global-labels")
    labels = [OutcomeLabelFactory.create(organization=owner, **reached(POSITIVE)) for _ in range(positives)]
    labels += [OutcomeLabelFactory.create(organization=owner, **reached("delivered")) for _ in range(negatives)]
    return labels


def wait_out_retry(run: TrainingRun) -> None:
    """Let the time pass until a step waiting to retry a provider call is due."""
    if run.retry_at is not None and run.retry_at > timezone.now():
        TrainingRun.objects.filter(pk=run.pk).update(retry_at=timezone.now())
        run.refresh_from_db()


def drive(run: TrainingRun, *, limit: int = 40) -> TrainingRun:
    """Advance the run step by step (polls and retries included) until it ends, as the workers would."""
    for _ in range(limit):
        run.refresh_from_db()
        if not run.is_active:
            return run
        wait_out_retry(run)
        training_run_advance(run=run)
    raise AssertionError(f"run still {run.status} after {limit} steps")


def drive_to(run: TrainingRun, status: str, *, limit: int = 40) -> TrainingRun:
    """Advance the run until it reaches ``status``."""
    for _ in range(limit):
        run.refresh_from_db()
        if run.status == status:
            return run
        if not run.is_active:
            raise AssertionError(f"run ended {run.status} ({run.error}) before reaching {status}")
        wait_out_retry(run)
        training_run_advance(run=run)
    raise AssertionError(f"run still {run.status} after {limit} steps")


def run_due_schedules() -> int:
    """Make every schedule due and let django-q2's own scheduler run them; return how many were due."""
    due = Schedule.objects.update(next_run=timezone.now() - datetime.timedelta(seconds=1))
    scheduler(broker=get_broker())
    return due


def failed_tasks() -> list[str]:
    """The results of django-q2 tasks that raised (in sync mode they are recorded, not raised)."""
    return [str(task.result) for task in Task.objects.filter(success=False)]


def local_provider_files(kind: str) -> list[Path]:
    """The local provider's stored files, jobs or models."""
    folder = Path(settings.MEDIA_ROOT) / "local_provider" / kind
    return sorted(folder.glob("*.json*")) if folder.exists() else []


def signed_headers(
    payload: bytes, secret: str, *, timestamp: int | None = None, webhook_id: str = "wh_test_0001"
) -> dict[str, str]:
    """Standard Webhooks headers for ``payload``, signed as OpenAI signs them."""
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{stamp}.{payload.decode()}".encode()
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{signature}",
    }


def webhook_event(kind: str, job_id: str) -> bytes:
    """The JSON body of a ``fine_tuning.job.*`` webhook event."""
    event: dict[str, Any] = {
        "id": "evt_test_0001",
        "object": "event",
        "type": kind,
        "created_at": int(time.time()),
        "data": {"id": job_id},
    }
    return json.dumps(event).encode()
