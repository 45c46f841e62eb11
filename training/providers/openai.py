"""The OpenAI fine-tuning provider, on the official ``openai`` client.

Any OpenAI-compatible server works through ``OPENAI_BASE_URL``. The client retries reads on rate
limits, 5xx answers and timeouts (``OPENAI_MAX_RETRIES``); uploads and job creations are sent once,
since a retried POST that OpenAI had carried out makes a second file or job. Whatever fails comes
out of this module as one ``ProviderError`` with OpenAI's message.
"""

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import openai
from django.conf import settings
from openai.types.fine_tuning import FineTuningJob, job_create_params
from rest_framework import status

from training.providers.base import (
    Checkpoint,
    FileInfo,
    FineTuningProvider,
    JobEvent,
    JobInfo,
    ProviderError,
    build_method,
    string_metadata,
)

logger = logging.getLogger(__name__)

# OpenAI's wind-down of self-serve fine-tuning: no new fine-tuning jobs from this day, and these base
# models with every fine-tune of them shut down on the next. A pool still on this provider must move
# to another (``openweights``) before then; the admin shows these dates on such pools.
FINE_TUNING_JOBS_END = date(2027, 1, 6)
FINE_TUNED_MODELS_SHUTDOWN = date(2027, 1, 14)
WIND_DOWN_BASE_MODELS = ("gpt-4o", "gpt-4.1")

SHUTDOWN_CACHE_SECONDS = 3600
EVENTS_PAGE_SIZE = 100
CHECKPOINTS_PAGE_SIZE = 100
JOBS_PAGE_SIZE = 100

# Shutdown dates change a few times a year; one lookup per model per process per hour is plenty.
# Keyed by base URL too, so two OpenAI-compatible servers never share an answer.
_shutdown_cache: dict[tuple[str, str], tuple[float, date | None]] = {}
_shutdown_cache_lock = threading.Lock()


def clear_shutdown_cache() -> None:
    """Forget every cached shutdown date (for tests, and after changing ``OPENAI_BASE_URL``)."""
    with _shutdown_cache_lock:
        _shutdown_cache.clear()


@contextmanager
def openai_errors() -> Iterator[None]:
    """Turn every exception of the openai client into a ``ProviderError``.

    Timeouts, lost connections, 408, 429 and 5xx answers are retryable: a later attempt (the next
    poll, or the orchestrator's retry of an upload or creation) may succeed.
    """
    try:
        yield
    except openai.APITimeoutError as exc:
        raise ProviderError(f"OpenAI did not answer in time: {exc.message}", code="timeout", retryable=True) from exc
    except openai.APIConnectionError as exc:
        raise ProviderError(f"Cannot reach OpenAI: {exc.message}", code="connection_error", retryable=True) from exc
    except openai.APIStatusError as exc:
        raise status_error(exc) from exc
    except openai.OpenAIError as exc:
        raise ProviderError(f"OpenAI client error: {exc}", code="client_error") from exc


def status_error(exc: openai.APIStatusError) -> ProviderError:
    """Return the ``ProviderError`` for an HTTP error answer, keeping OpenAI's own message."""
    body = exc.body if isinstance(exc.body, dict) else {}
    message = body.get("message") if isinstance(body.get("message"), str) else exc.message
    retryable = exc.status_code in (408, 429) or exc.status_code >= 500
    return ProviderError(
        f"OpenAI answered {exc.status_code}: {message}",
        code=str(body.get("code") or "provider_error"),
        retryable=retryable,
        provider_status=exc.status_code,
        details={"provider": "openai", "status": exc.status_code, "param": body.get("param")},
    )


def parse_shutdown_date(value: Any) -> date | None:
    """Read a shutdown date given as unix seconds or as an ISO date or datetime string."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        return datetime.fromtimestamp(int(value), tz=UTC).date()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    logger.warning("Ignoring an unreadable model shutdown_date: %r", value)
    return None


def job_info(job: FineTuningJob) -> JobInfo:
    """Return our ``JobInfo`` for the client's ``FineTuningJob``."""
    error = job.error.message if job.error is not None and job.error.message else None
    return JobInfo(
        id=job.id,
        status=job.status,
        model=job.model,
        fine_tuned_model=job.fine_tuned_model,
        trained_tokens=job.trained_tokens,
        error=error,
        estimated_finish=job.estimated_finish,
        finished_at=job.finished_at,
        created_at=job.created_at,
    )


class OpenAIProvider(FineTuningProvider):
    """Fine-tunes through OpenAI's files, fine-tuning, models and chat endpoints.

    Pass ``client`` to use a ready client; otherwise one is built from settings on first use, so
    that a missing API key surfaces as a ``ProviderError`` from the call that needed it.
    """

    name = "openai"
    poll_interval = 60.0  # jobs take tens of minutes and each poll is three API calls

    def __init__(self, client: openai.OpenAI | None = None) -> None:
        self._client = client

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            with openai_errors():
                self._client = openai.OpenAI(
                    api_key=settings.OPENAI_API_KEY,
                    base_url=settings.OPENAI_BASE_URL or None,
                    max_retries=settings.OPENAI_MAX_RETRIES,
                    timeout=settings.OPENAI_TIMEOUT,
                )
        return self._client

    @property
    def creating_client(self) -> openai.OpenAI:
        """The client for calls that create something: no retries of its own."""
        return self.client.with_options(max_retries=0)

    def upload_training_file(self, path: str | Path, *, name: str | None = None) -> str:
        """Upload a JSONL file with purpose "fine-tune" (under ``name``) and return its file id.

        The bytes are read up front, not streamed from an open file, so a retry sends the same bytes.
        """
        source = Path(path)
        try:
            content = source.read_bytes()
        except OSError as exc:
            raise ProviderError(f"Cannot read training file {source}: {exc}", code="file_unreadable") from exc
        with openai_errors():
            uploaded = self.creating_client.files.create(
                file=(name or source.name, content, "application/jsonl"),
                purpose="fine-tune",
            )
        return uploaded.id

    def find_files(self, *, name: str) -> list[FileInfo]:
        """The fine-tune files named ``name`` (OpenAI filters by purpose only), oldest first."""
        with openai_errors():
            found = [
                FileInfo(id=item.id, name=item.filename, created_at=item.created_at)
                for item in self.client.files.list(purpose="fine-tune")
                if item.filename == name
            ]
        return sorted(found, key=lambda item: (item.created_at or 0, item.id))

    def delete_file(self, file_id: str) -> None:
        try:
            with openai_errors():
                self.client.files.delete(file_id)
        except ProviderError as exc:
            if exc.provider_status != 404:
                raise

    def find_jobs(self, *, run_id: str) -> list[JobInfo]:
        """The jobs tagged with the run in their metadata, oldest first (checked here too)."""
        with openai_errors():
            jobs = [
                job_info(job)
                for job in self.client.fine_tuning.jobs.list(metadata={"training_run_id": run_id}, limit=JOBS_PAGE_SIZE)
                if (job.metadata or {}).get("training_run_id") == run_id
            ]
        return sorted(jobs, key=lambda job: (job.created_at or 0, job.id))

    def create_job(
        self,
        *,
        training_file: str,
        validation_file: str | None = None,
        model: str,
        suffix: str | None = None,
        method: str = "sft",
        hyperparameters: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Refuse a method OpenAI lacks (kto) or a base model near its shutdown, then create the job."""
        self.ensure_method_supported(method)
        self.check_base_model(model)
        with openai_errors():
            job = self.creating_client.fine_tuning.jobs.create(
                model=model,
                training_file=training_file,
                validation_file=validation_file or openai.omit,
                suffix=suffix or openai.omit,
                method=cast(job_create_params.Method, build_method(method, hyperparameters)),
                metadata=string_metadata(metadata) or openai.omit,
            )
        return job.id

    def get_job(self, job_id: str) -> JobInfo:
        with openai_errors():
            return job_info(self.client.fine_tuning.jobs.retrieve(job_id))

    def list_events(self, job_id: str) -> list[JobEvent]:
        """Return the newest page of events (OpenAI lists newest first), oldest first."""
        with openai_errors():
            page = self.client.fine_tuning.jobs.list_events(job_id, limit=EVENTS_PAGE_SIZE)
        # Reversed before the (stable) sort so events of the same second keep their order.
        events = [JobEvent(created_at=e.created_at, level=e.level, message=e.message) for e in reversed(page.data)]
        return sorted(events, key=lambda event: event.created_at)

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        with openai_errors():
            page = self.client.fine_tuning.jobs.checkpoints.list(job_id, limit=CHECKPOINTS_PAGE_SIZE)
        checkpoints = [
            Checkpoint(
                step=item.step_number,
                train_loss=item.metrics.train_loss,
                valid_loss=item.metrics.valid_loss,
                train_mean_token_accuracy=item.metrics.train_mean_token_accuracy,
                valid_mean_token_accuracy=item.metrics.valid_mean_token_accuracy,
                fine_tuned_model_checkpoint=item.fine_tuned_model_checkpoint,
            )
            for item in page.data
        ]
        return sorted(checkpoints, key=lambda checkpoint: checkpoint.step)

    def cancel_job(self, job_id: str) -> JobInfo:
        with openai_errors():
            return job_info(self.client.fine_tuning.jobs.cancel(job_id))

    def complete(self, model_id: str, system_prompt: str, user_prompt: str) -> str:
        with openai_errors():
            completion = self.client.chat.completions.create(
                model=model_id,
                messages=[
                    {"role": "system", "content": system_prompt},
                    {"role": "user", "content": user_prompt},
                ],
            )
        if not completion.choices:
            raise ProviderError(f"OpenAI returned no completion for {model_id}.", code="empty_completion")
        return completion.choices[0].message.content or ""

    def base_model_shutdown_date(self, model: str) -> date | None:
        """Return the model's ``shutdown_date`` from the models endpoint, cached for an hour."""
        key = (str(self.client.base_url), model)
        with _shutdown_cache_lock:
            cached = _shutdown_cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        with openai_errors():
            found = self.client.models.retrieve(model)
        extra = found.model_extra or {}
        shutdown = parse_shutdown_date(getattr(found, "shutdown_date", None) or extra.get("shutdown_date"))
        with _shutdown_cache_lock:
            _shutdown_cache[key] = (time.monotonic() + SHUTDOWN_CACHE_SECONDS, shutdown)
        return shutdown

    def unwrap_webhook(self, payload: bytes | str, headers: Mapping[str, str]) -> Any:
        """Verify a webhook's Standard Webhooks signature and return the parsed event.

        A wrong, missing or stale (older than five minutes) signature raises ``ProviderError``
        with code "invalid_signature" and status 400, so a forged call changes nothing. Checking a
        signature calls nobody, so it needs only the webhook secret, not ``OPENAI_API_KEY``.
        """
        secret = getattr(settings, "OPENAI_WEBHOOK_SECRET", "")
        if not secret:
            raise ProviderError("OPENAI_WEBHOOK_SECRET is not set: webhooks cannot be verified.", code="not_configured")
        verifier = self._client or openai.OpenAI(api_key="unused: verification makes no request", max_retries=0)
        try:
            return verifier.webhooks.unwrap(payload, dict(headers), secret=secret)
        except (openai.InvalidWebhookSignatureError, ValueError) as exc:
            raise ProviderError(
                f"Webhook signature rejected: {exc}",
                code="invalid_signature",
                status_code=status.HTTP_400_BAD_REQUEST,
            ) from exc
