"""POST /training/webhooks/openai: signed events advance the run at once; anything else changes nothing."""

import datetime
import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import OrganizationFactory
from tests.training.conftest import WEBHOOK_SECRET
from tests.training.fake_openai import FakeOpenAI
from tests.training.helpers import drive_to, make_labels, signed_headers, webhook_event
from training.models import TrainingRun, WebhookDelivery
from training.providers import get_provider
from training.services import training_run_start

pytestmark = pytest.mark.django_db

Status = TrainingRun.Status
URL = "/training/webhooks/openai"


@pytest.fixture
def training_run(settings: Any, fake_openai: FakeOpenAI) -> TrainingRun:
    """A run on the fake OpenAI API whose job is training (not polled yet)."""
    settings.FINE_TUNING_PROVIDER = "openai"
    settings.TRAINING_MIN_EXAMPLES = 10
    organization = OrganizationFactory.create()
    make_labels(organization)
    run = training_run_start(organization=organization, triggered_by="command", actor=None)
    return drive_to(run, Status.TRAINING)


def post(client: Client, payload: bytes, headers: dict[str, str]) -> Any:
    return client.post(URL, data=payload, content_type="application/json", headers=headers)


def finish_job_at_the_provider(job_id: str) -> None:
    provider = get_provider("openai")
    while not provider.get_job(job_id).is_terminal:
        pass


def test_the_route_is_named() -> None:
    assert reverse("training-webhook-openai") == URL


def test_a_signed_success_event_advances_the_run_at_once(
    client: Client,
    training_run: TrainingRun,
    django_capture_on_commit_callbacks: Any,
) -> None:
    finish_job_at_the_provider(training_run.provider_job_id)
    payload = webhook_event("fine_tuning.job.succeeded", training_run.provider_job_id)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, payload, signed_headers(payload, WEBHOOK_SECRET))
    assert response.status_code == 200
    assert response.json() == {"received": True, "training_run_id": str(training_run.pk)}
    training_run.refresh_from_db()
    assert training_run.status == Status.SUCCEEDED, training_run.error
    assert training_run.registered_model is not None


def test_a_signed_failure_event_fails_the_run_with_the_providers_error(
    client: Client,
    training_run: TrainingRun,
    fake_openai: FakeOpenAI,
    django_capture_on_commit_callbacks: Any,
) -> None:
    fake_openai.fail_jobs("Training diverged.")
    finish_job_at_the_provider(training_run.provider_job_id)
    payload = webhook_event("fine_tuning.job.failed", training_run.provider_job_id)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, payload, signed_headers(payload, WEBHOOK_SECRET)).status_code == 200
    training_run.refresh_from_db()
    assert (training_run.status, training_run.error) == (Status.FAILED, "Training diverged.")


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda payload: signed_headers(payload, "whsec_" + "d3Jvbmc=" * 4), id="wrong-secret"),
        pytest.param(
            lambda payload: signed_headers(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600), id="stale"
        ),
        pytest.param(lambda payload: {}, id="unsigned"),
        pytest.param(
            lambda payload: signed_headers(payload.replace(b"succeeded", b"cancelled"), WEBHOOK_SECRET), id="tampered"
        ),
    ],
)
def test_a_bad_or_stale_signature_gets_400_and_changes_nothing(
    client: Client, training_run: TrainingRun, fake_openai: FakeOpenAI, forge: Any
) -> None:
    finish_job_at_the_provider(training_run.provider_job_id)
    before = len(fake_openai.requests)
    payload = webhook_event("fine_tuning.job.succeeded", training_run.provider_job_id)
    response = post(client, payload, forge(payload))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    training_run.refresh_from_db()
    assert training_run.status == Status.TRAINING and training_run.poll_count == 0
    assert len(fake_openai.requests) == before


@pytest.mark.parametrize(
    ("kind", "job_id"),
    [("fine_tuning.job.succeeded", "ftjob-unknown"), ("batch.completed", "batch_abc"), ("eval.run.failed", "")],
)
def test_unknown_jobs_and_other_event_types_are_acknowledged(
    client: Client, fake_openai: FakeOpenAI, kind: str, job_id: str
) -> None:
    payload = webhook_event(kind, job_id)
    response = post(client, payload, signed_headers(payload, WEBHOOK_SECRET))
    assert response.status_code == 200
    assert response.json() == {"received": True, "training_run_id": None}


def test_an_event_for_a_run_that_moved_on_changes_nothing(
    client: Client, training_run: TrainingRun, fake_openai: FakeOpenAI
) -> None:
    TrainingRun.objects.filter(pk=training_run.pk).update(status=Status.CANCELLED)
    payload = webhook_event("fine_tuning.job.succeeded", training_run.provider_job_id)
    assert post(client, payload, signed_headers(payload, WEBHOOK_SECRET)).status_code == 200
    training_run.refresh_from_db()
    assert training_run.status == Status.CANCELLED and training_run.poll_count == 0


def test_a_replayed_delivery_is_acknowledged_without_polling_again(
    client: Client, training_run: TrainingRun, fake_openai: FakeOpenAI, django_capture_on_commit_callbacks: Any
) -> None:
    payload = webhook_event("fine_tuning.job.succeeded", training_run.provider_job_id)
    headers = signed_headers(payload, WEBHOOK_SECRET)
    answers = []
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            answers.append(post(client, payload, headers))
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[1].json() == answers[2].json() == {"received": True, "duplicate": True}
    assert len(fake_openai.requests_to("jobs.retrieve")) == 1
    training_run.refresh_from_db()
    assert training_run.status == Status.TRAINING and training_run.poll_count == 1


def test_another_delivery_of_the_same_event_is_acted_on(
    client: Client, training_run: TrainingRun, fake_openai: FakeOpenAI, django_capture_on_commit_callbacks: Any
) -> None:
    payload = webhook_event("fine_tuning.job.succeeded", training_run.provider_job_id)
    for webhook_id in ("wh_first", "wh_second"):
        with django_capture_on_commit_callbacks(execute=True):
            post(client, payload, signed_headers(payload, WEBHOOK_SECRET, webhook_id=webhook_id))
    assert len(fake_openai.requests_to("jobs.retrieve")) == 2


def test_a_forged_replay_does_not_use_up_the_id(client: Client, training_run: TrainingRun) -> None:
    payload = webhook_event("fine_tuning.job.succeeded", training_run.provider_job_id)
    forged = signed_headers(payload, "whsec_" + "d3Jvbmc=" * 4, webhook_id="wh_once")
    assert post(client, payload, forged).status_code == 400
    answer = post(client, payload, signed_headers(payload, WEBHOOK_SECRET, webhook_id="wh_once"))
    assert answer.json() == {"received": True, "training_run_id": str(training_run.pk)}


def test_delivery_ids_are_forgotten_after_a_day(client: Client, training_run: TrainingRun) -> None:
    payload = webhook_event("fine_tuning.job.succeeded", training_run.provider_job_id)
    assert post(client, payload, signed_headers(payload, WEBHOOK_SECRET, webhook_id="wh_old")).status_code == 200
    WebhookDelivery.objects.update(received_at=timezone.now() - datetime.timedelta(days=2))
    post(client, payload, signed_headers(payload, WEBHOOK_SECRET, webhook_id="wh_new"))
    assert list(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == ["wh_new"]


def test_without_a_secret_webhooks_are_refused_as_unavailable(client: Client, settings: Any) -> None:
    settings.OPENAI_WEBHOOK_SECRET = ""
    settings.OPENAI_API_KEY = "sk-test"
    payload = webhook_event("fine_tuning.job.succeeded", "ftjob-1")
    response = post(client, payload, signed_headers(payload, WEBHOOK_SECRET))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_configured"


def test_signatures_are_verified_without_an_openai_api_key(client: Client, settings: Any) -> None:
    settings.OPENAI_API_KEY, settings.OPENAI_WEBHOOK_SECRET = "", WEBHOOK_SECRET
    payload = webhook_event("fine_tuning.job.succeeded", "ftjob-unknown")
    assert post(client, payload, signed_headers(payload, WEBHOOK_SECRET)).json() == {
        "received": True,
        "training_run_id": None,
    }
    assert post(client, payload, signed_headers(payload, "whsec_" + "A" * 32)).status_code == 400


def test_only_post_is_allowed(client: Client) -> None:
    assert client.get(URL).status_code == 405
