"""The openai provider, driven through the real openai client over HTTP against the fake API."""

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.training.conftest import WEBHOOK_SECRET
from tests.training.fake_openai import FakeOpenAI
from training.providers import ProviderError, build_method, get_provider, suffix_for
from training.providers.openai import OpenAIProvider

BASE_MODEL = "gpt-4o-2024-08-06"
SYSTEM = "You are an expert B2B sales copywriter."


def sft_line(user: str, assistant: str, quality: float) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ],
        "metadata": {"quality_score": quality},
    }


def dpo_line(user: str, preferred: str, rejected: str) -> dict[str, Any]:
    return {
        "input": {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]},
        "preferred_output": [{"role": "assistant", "content": preferred}],
        "non_preferred_output": [{"role": "assistant", "content": rejected}],
    }


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def sft_file(tmp_path: Path) -> Path:
    prompt = "Write a message for: Industry=SaaS, Role=VP Sales, Framework=PAS, Tone=professional"
    lines = [sft_line(prompt, f"Subject: Idea {n}\n\nHello {{{{first_name}}}}, café ☕ {n}", 0.9) for n in range(3)]
    return write_jsonl(tmp_path / "train.jsonl", lines)


@pytest.fixture
def provider(fake_openai: FakeOpenAI) -> OpenAIProvider:
    built = get_provider("openai")
    assert isinstance(built, OpenAIProvider)
    return built


def create_job(provider: OpenAIProvider, path: Path, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "training_file": provider.upload_training_file(path),
        "model": BASE_MODEL,
        "suffix": suffix_for("v2.1.0"),
        "method": "sft",
        "hyperparameters": None,
        "metadata": {"run_id": "run-1", "organization": "acme"},
    }
    arguments.update(overrides)
    return provider.create_job(**arguments)


def sign(payload: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Sign a payload the Standard Webhooks way: base64 HMAC-SHA256 of "id.timestamp.body"."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"msg_1.{stamp}.{payload}".encode(), hashlib.sha256).digest()
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


# --- helpers shared by every provider -------------------------------------------------------------


def test_suffix_follows_the_seeds_style() -> None:
    assert suffix_for("v2.1.0") == "rekindle-v2-1-0"


def test_suffix_is_short_and_safe_whatever_the_version(settings: Any) -> None:
    settings.FINE_TUNING_SUFFIX_PREFIX = "Acme Corp"
    suffix = suffix_for("v10.0.0_" + "X" * 100)
    assert suffix.startswith("acme-corp-v10-0-0-x")
    assert len(suffix) <= 64
    assert set(suffix) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert not suffix.endswith("-")


def test_build_method_fills_in_the_seeds_defaults() -> None:
    assert build_method("sft", None) == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": "auto"}},
    }
    dpo = build_method("dpo", {"n_epochs": 2, "beta": None})
    assert dpo == {
        "type": "dpo",
        "dpo": {
            "hyperparameters": {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto", "beta": "auto"}
        },
    }


def test_build_method_refuses_an_unknown_method() -> None:
    with pytest.raises(ProviderError, match="Unknown fine-tuning method"):
        build_method("reinforcement", None)


# --- files and jobs -----------------------------------------------------------------------------


def test_it_uploads_the_dataset_for_fine_tuning_byte_exact(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path
) -> None:
    file_id = provider.upload_training_file(sft_file)

    stored = fake_openai.files[file_id]
    assert stored["purpose"] == "fine-tune"
    assert stored["content"] == sft_file.read_bytes()
    assert stored["filename"] == "train.jsonl"
    (request,) = fake_openai.requests_to("files.create")
    assert request.headers["authorization"] == "Bearer sk-test"


def test_it_creates_a_job_with_method_hyperparameters_suffix_and_metadata(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path
) -> None:
    job_id = create_job(provider, sft_file, hyperparameters={"n_epochs": 4})

    (request,) = fake_openai.requests_to("jobs.create")
    assert request.body["model"] == BASE_MODEL
    assert request.body["training_file"] in fake_openai.files
    assert request.body["suffix"] == "rekindle-v2-1-0"
    assert request.body["metadata"] == {"run_id": "run-1", "organization": "acme"}
    assert request.body["method"] == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 4, "batch_size": "auto", "learning_rate_multiplier": "auto"}},
    }
    assert "validation_file" not in request.body
    assert fake_openai.jobs[job_id]["status"] == "validating_files"


def test_it_creates_a_dpo_job_with_a_validation_file(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    lines = [dpo_line("Write a message for: Industry=SaaS", "Good", "Bad")] * 2
    validation = provider.upload_training_file(write_jsonl(tmp_path / "valid.jsonl", lines))

    create_job(provider, write_jsonl(tmp_path / "dpo.jsonl", lines), method="dpo", validation_file=validation)

    (request,) = fake_openai.requests_to("jobs.create")
    assert request.body["method"]["type"] == "dpo"
    assert request.body["method"]["dpo"]["hyperparameters"]["beta"] == "auto"
    assert request.body["validation_file"] == validation


def test_a_rejected_job_raises_the_providers_message_and_is_not_retried(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path
) -> None:
    with pytest.raises(ProviderError) as caught:
        create_job(provider, sft_file, method="dpo")  # SFT lines are no DPO pairs

    assert "lacks input, preferred_output, non_preferred_output" in caught.value.message
    assert caught.value.provider_status == 400
    assert caught.value.code == "invalid_training_file"
    assert not caught.value.retryable
    assert len(fake_openai.requests_to("jobs.create")) == 1


def test_a_job_goes_through_its_lifecycle_to_succeeded(provider: OpenAIProvider, sft_file: Path) -> None:
    job_id = create_job(provider, sft_file)

    polls = [provider.get_job(job_id) for _ in range(4)]

    assert [info.status for info in polls] == ["queued", "running", "succeeded", "succeeded"]
    done = polls[-1]
    assert done.is_terminal
    assert done.model == BASE_MODEL
    assert done.fine_tuned_model == f"ft:{BASE_MODEL}:fake-org:rekindle-v2-1-0:{job_id.split('-')[1]}"
    assert done.trained_tokens and done.trained_tokens > 0
    assert done.finished_at and done.created_at and done.error is None
    assert polls[1].estimated_finish is not None


def test_it_lists_events_oldest_first_and_checkpoints_by_step(provider: OpenAIProvider, sft_file: Path) -> None:
    job_id = create_job(provider, sft_file)
    for _ in range(3):
        provider.get_job(job_id)

    events = provider.list_events(job_id)
    checkpoints = provider.list_checkpoints(job_id)

    assert events[0].message.startswith("Created fine-tuning job")
    assert events[-1].message.startswith("New fine-tuned model created")
    assert {event.level for event in events} == {"info"}
    assert [checkpoint.step for checkpoint in checkpoints] == [3, 6, 9]
    losses = [checkpoint.train_loss or 0 for checkpoint in checkpoints]
    assert losses == sorted(losses, reverse=True)
    assert checkpoints[-1].fine_tuned_model_checkpoint.endswith(":ckpt-step-9")


def test_it_cancels_a_job(provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path) -> None:
    job_id = create_job(provider, sft_file)

    info = provider.cancel_job(job_id)

    assert info.status == "cancelled"
    assert fake_openai.jobs[job_id]["status"] == "cancelled"
    assert provider.get_job(job_id).status == "cancelled"


def test_a_failed_job_surfaces_its_error(provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path) -> None:
    fake_openai.fail_jobs("The job failed due to an invalid training file: too few examples.")
    job_id = create_job(provider, sft_file)

    info = [provider.get_job(job_id) for _ in range(3)][-1]

    assert info.status == "failed"
    assert info.error == "The job failed due to an invalid training file: too few examples."
    assert info.fine_tuned_model is None
    assert provider.list_events(job_id)[-1].level == "error"


def test_complete_answers_with_the_fine_tuned_model(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path
) -> None:
    job_id = create_job(provider, sft_file)
    model_id = [provider.get_job(job_id) for _ in range(3)][-1].fine_tuned_model
    assert model_id is not None

    text = provider.complete(model_id, SYSTEM, "Write a message for VP of Sales in SaaS")

    assert model_id in text
    (request,) = fake_openai.requests_to("chat.completions")
    assert request.body["model"] == model_id
    assert request.body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Write a message for VP of Sales in SaaS"},
    ]


def test_complete_with_an_unknown_model_raises_the_providers_message(provider: OpenAIProvider) -> None:
    with pytest.raises(ProviderError, match="does not exist") as caught:
        provider.complete("ft:gpt-4o:nobody:x:1", SYSTEM, "Hi")
    assert caught.value.provider_status == 404


# --- base model shutdown guard --------------------------------------------------------------------


def test_a_base_model_shutting_down_within_the_guard_is_refused(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path, settings: Any
) -> None:
    settings.BASE_MODEL_SHUTDOWN_GUARD_DAYS = 30
    shutdown = timezone.now().date() + timedelta(days=10)
    fake_openai.add_model(BASE_MODEL, shutdown_date=shutdown)

    with pytest.raises(ProviderError) as caught:
        create_job(provider, sft_file)

    assert caught.value.code == "base_model_shutting_down"
    assert f"shuts down on {shutdown.isoformat()}" in caught.value.message
    assert "30-day guard" in caught.value.message
    assert fake_openai.requests_to("jobs.create") == []


def test_a_base_model_with_a_far_shutdown_date_is_accepted(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path, settings: Any
) -> None:
    settings.BASE_MODEL_SHUTDOWN_GUARD_DAYS = 30
    far = timezone.now() + timedelta(days=400)
    fake_openai.add_model(BASE_MODEL, shutdown_date=int(far.timestamp()))  # unix seconds work too

    create_job(provider, sft_file)

    assert provider.base_model_shutdown_date(BASE_MODEL) == far.date()
    assert len(fake_openai.requests_to("jobs.create")) == 1


def test_the_shutdown_date_is_read_once_and_cached(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path
) -> None:
    fake_openai.add_model(BASE_MODEL, shutdown_date="2099-01-14")

    create_job(provider, sft_file)
    create_job(provider, sft_file)

    assert len(fake_openai.requests_to("models.retrieve")) == 1
    assert provider.base_model_shutdown_date(BASE_MODEL).isoformat() == "2099-01-14"  # type: ignore[union-attr]


def test_a_base_model_without_a_shutdown_date_is_accepted(provider: OpenAIProvider) -> None:
    assert provider.base_model_shutdown_date(BASE_MODEL) is None
    provider.check_base_model(BASE_MODEL)


# --- faults ------------------------------------------------------------------------------------


def test_a_429_on_a_read_is_retried_by_the_client_and_the_call_succeeds(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path
) -> None:
    job_id = create_job(provider, sft_file)
    fake_openai.fail_next("jobs.retrieve", 429)

    assert provider.get_job(job_id).id == job_id

    assert len(fake_openai.requests_to("jobs.retrieve")) == 2


@pytest.mark.parametrize("route", ["files.create", "jobs.create"])
def test_a_creation_is_sent_once_and_its_429_raised_as_retryable(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path, route: str
) -> None:
    """The client never retries a POST that creates: a retry after a lost answer would make a duplicate."""
    fake_openai.fail_next(route, 429)

    with pytest.raises(ProviderError) as caught:
        create_job(provider, sft_file)  # uploads, then creates

    assert caught.value.retryable and caught.value.provider_status == 429
    assert len(fake_openai.requests_to(route)) == 1


def test_500s_until_give_up_raise_a_retryable_provider_error(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, sft_file: Path, settings: Any
) -> None:
    job_id = create_job(provider, sft_file)
    fake_openai.fail_next("jobs.retrieve", 500, times=10, message="The server had an error.")

    with pytest.raises(ProviderError) as caught:
        provider.get_job(job_id)

    assert caught.value.retryable
    assert caught.value.provider_status == 500
    assert "The server had an error." in caught.value.message
    assert len(fake_openai.requests_to("jobs.retrieve")) == settings.OPENAI_MAX_RETRIES + 1


def test_a_timeout_raises_a_retryable_provider_error(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.OPENAI_TIMEOUT = 0.3
    settings.OPENAI_MAX_RETRIES = 1
    fake_openai.delay_next("jobs.retrieve", 3.0, times=2)

    with pytest.raises(ProviderError) as caught:
        get_provider("openai").get_job("ftjob-000001abcdef")

    assert caught.value.code == "timeout"
    assert caught.value.retryable
    assert len(fake_openai.requests_to("jobs.retrieve")) == 2


def test_an_unreachable_server_raises_a_retryable_provider_error(settings: Any) -> None:
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing listens on loopback
    settings.OPENAI_MAX_RETRIES = 0

    with pytest.raises(ProviderError, match="Cannot reach OpenAI") as caught:
        get_provider("openai").get_job("ftjob-1")

    assert caught.value.code == "connection_error"
    assert caught.value.retryable


def test_a_missing_api_key_is_a_provider_error(
    fake_openai: FakeOpenAI, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.OPENAI_API_KEY = ""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)

    with pytest.raises(ProviderError, match="Missing credentials"):
        get_provider("openai").get_job("ftjob-1")
    assert fake_openai.requests == []


def test_a_wrong_api_key_is_a_provider_error_that_is_not_retried(fake_openai: FakeOpenAI, settings: Any) -> None:
    settings.OPENAI_API_KEY = "sk-wrong"

    with pytest.raises(ProviderError, match="Incorrect API key") as caught:
        get_provider("openai").get_job("ftjob-1")

    assert caught.value.provider_status == 401
    assert not caught.value.retryable
    assert len(fake_openai.requests) == 1


# --- webhooks ----------------------------------------------------------------------------------


def webhook_payload(kind: str = "fine_tuning.job.succeeded") -> str:
    return json.dumps(
        {"id": "evt_1", "object": "event", "created_at": int(time.time()), "type": kind, "data": {"id": "ftjob-abc"}}
    )


def test_a_correctly_signed_webhook_is_unwrapped(provider: OpenAIProvider) -> None:
    payload = webhook_payload()

    event = provider.unwrap_webhook(payload.encode(), sign(payload))

    assert event.type == "fine_tuning.job.succeeded"
    assert event.data.id == "ftjob-abc"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda p: sign(p, secret="whsec_" + base64.b64encode(b"another secret").decode()), id="bad"),
        pytest.param(lambda p: sign(p, timestamp=int(time.time()) - 600), id="stale"),
        pytest.param(lambda p: {**sign(p), "webhook-signature": "v1,AAAA"}, id="tampered"),
        pytest.param(lambda p: {}, id="missing"),
    ],
)
def test_a_webhook_with_a_bad_or_stale_signature_is_rejected(provider: OpenAIProvider, headers: Any) -> None:
    payload = webhook_payload()

    with pytest.raises(ProviderError) as caught:
        provider.unwrap_webhook(payload, headers(payload))

    assert caught.value.code == "invalid_signature"
    assert caught.value.status_code == 400


def test_a_webhook_whose_body_was_changed_is_rejected(provider: OpenAIProvider) -> None:
    headers = sign(webhook_payload("fine_tuning.job.failed"))

    with pytest.raises(ProviderError, match="signature"):
        provider.unwrap_webhook(webhook_payload("fine_tuning.job.succeeded"), headers)
