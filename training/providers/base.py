"""The one interface every fine-tuning provider implements, and the values it speaks in.

The orchestrator, the admin and the commands only ever see ``FineTuningProvider``, ``JobInfo``,
``JobEvent``, ``Checkpoint`` and ``ProviderError``: who trains the model (OpenAI, the offline
``local`` provider, an open-weights trainer later) is a setting, not a code path.
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import status

from flywheel.errors import ApplicationError

JOB_STATUSES = ("validating_files", "queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
SUFFIX_MAX_LENGTH = 64
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": "auto"}
METHOD_TYPES = {"sft": "supervised", "supervised": "supervised", "dpo": "dpo"}


class ProviderError(ApplicationError):
    """A fine-tuning provider refused, failed or could not be reached.

    ``message`` carries the provider's own words. ``retryable`` says whether trying the same call
    later may succeed (rate limits, 5xx answers, timeouts, lost connections). ``provider_status``
    is the HTTP status the provider answered, if any; ``status_code`` stays the status our own API
    answers with (502 by default: the fault is upstream).
    """

    code = "provider_error"
    status_code: int = status.HTTP_502_BAD_GATEWAY

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        provider_status: int | None = None,
        status_code: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retryable = retryable
        self.provider_status = provider_status
        if status_code is not None:
            self.status_code = status_code


@dataclass(frozen=True)
class JobInfo:
    """A fine-tuning job as the provider reports it now.

    ``status`` is one of ``JOB_STATUSES``; times are unix seconds. ``model`` is the base model,
    ``fine_tuned_model`` the resulting one once the job has succeeded.
    """

    id: str
    status: str
    model: str
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: str | None = None
    estimated_finish: int | None = None
    finished_at: int | None = None
    created_at: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class FileInfo:
    """A file stored at the provider: its id, the name it was uploaded under, when (unix seconds)."""

    id: str
    name: str
    created_at: int | None = None


@dataclass(frozen=True)
class JobEvent:
    """One line of a job's log, oldest first when listed."""

    created_at: int
    level: str
    message: str


@dataclass(frozen=True)
class Checkpoint:
    """Metrics at one training step, and the model saved at that step."""

    step: int
    train_loss: float | None
    valid_loss: float | None
    train_mean_token_accuracy: float | None
    valid_mean_token_accuracy: float | None
    fine_tuned_model_checkpoint: str


class FineTuningProvider(ABC):
    """Uploads datasets, runs fine-tuning jobs and queries the models they produce.

    Every method raises ``ProviderError`` (never a client library's own exception), so callers
    handle one error type whoever trains. Calls are short and creations are tried once: the
    orchestrator looks up what exists (``find_files``, ``find_jobs``) before it creates again.
    """

    name: str = ""
    # The dataset methods this provider trains on; ``ensure_method_supported`` refuses others.
    supported_methods: frozenset[str] = frozenset({"sft", "dpo"})
    # Whether the provider trains a network and so measures losses; one that does not (``local``)
    # reports its own measured figures through ``job_metrics`` and no checkpoints.
    reports_loss: bool = True
    # Seconds between two polls of a running job; None: ``TRAINING_POLL_INTERVAL``. A setting,
    # ``TRAINING_POLL_INTERVALS = {"name": seconds}``, overrides it per provider.
    poll_interval: float | None = None

    @abstractmethod
    def upload_training_file(self, path: str | Path, *, name: str | None = None) -> str:
        """Upload a JSONL dataset (under ``name``, else the file's own name) and return its file id."""

    @abstractmethod
    def find_files(self, *, name: str) -> list[FileInfo]:
        """Return the fine-tuning files uploaded under ``name``, oldest first."""

    @abstractmethod
    def delete_file(self, file_id: str) -> None:
        """Delete an uploaded file; one that is already gone is not an error."""

    @abstractmethod
    def find_jobs(self, *, run_id: str) -> list[JobInfo]:
        """Return the jobs whose metadata ``training_run_id`` is ``run_id``, oldest first."""

    @abstractmethod
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
        """Start a fine-tuning job and return its id.

        ``method`` is "sft" or "dpo"; ``hyperparameters`` override the seed's defaults (see
        ``build_method``); ``metadata`` values are sent as strings, and its ``training_run_id``
        is what ``find_jobs`` finds the job by.
        """

    @abstractmethod
    def get_job(self, job_id: str) -> JobInfo:
        """Return the job's current state."""

    @abstractmethod
    def list_events(self, job_id: str) -> list[JobEvent]:
        """Return the job's recent events, oldest first."""

    @abstractmethod
    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        """Return the job's checkpoints, by ascending step."""

    @abstractmethod
    def cancel_job(self, job_id: str) -> JobInfo:
        """Cancel the job and return its state afterwards."""

    @abstractmethod
    def complete(self, model_id: str, system_prompt: str, user_prompt: str) -> str:
        """Answer one prompt with the given model (the seed's ``test_model``)."""

    def adapter_info(self, model_id: str) -> dict[str, Any]:
        """What the registry records about a trained adapter (sha256, base model); none by default."""
        return {}

    def job_metrics(self, job_id: str) -> dict[str, Any]:
        """Figures measured by the job beyond its checkpoints, by name; none by default."""
        return {}

    def ensure_method_supported(self, method: str) -> None:
        """Refuse, as a 400-class ``ProviderError``, a method this provider cannot train on."""
        if ("sft" if method == "supervised" else method) not in self.supported_methods:
            supported = ", ".join(sorted(self.supported_methods))
            raise ProviderError(
                f"The {self.name or type(self).__name__} provider cannot train with method {method!r}; "
                f"it supports {supported}.",
                code="unsupported_method",
                status_code=status.HTTP_400_BAD_REQUEST,
                details={"method": method, "supported_methods": sorted(self.supported_methods)},
            )

    def base_model_shutdown_date(self, model: str) -> date | None:
        """Return the day the provider shuts ``model`` down, or None when none is announced."""
        return None

    def check_base_model(self, model: str) -> None:
        """Refuse a base model that shuts down within ``BASE_MODEL_SHUTDOWN_GUARD_DAYS`` days.

        A model trained on a base that disappears soon would be registered, deployed and then
        stop answering; better to refuse before paying for the job.
        """
        shutdown = self.base_model_shutdown_date(model)
        if shutdown is None:
            return
        guard = int(getattr(settings, "BASE_MODEL_SHUTDOWN_GUARD_DAYS", 30))
        days_left = (shutdown - timezone.now().date()).days
        if days_left <= guard:
            raise ProviderError(
                f"Base model {model} shuts down on {shutdown.isoformat()} ({days_left} days from today), "
                f"within the {guard}-day guard (BASE_MODEL_SHUTDOWN_GUARD_DAYS). "
                "Choose a base model with a later or no shutdown date (TRAINING_BASE_MODEL).",
                code="base_model_shutting_down",
                status_code=status.HTTP_400_BAD_REQUEST,
                details={"model": model, "shutdown_date": shutdown.isoformat(), "guard_days": guard},
            )


def suffix_for(version: str) -> str:
    """Return the fine-tuned model suffix for a version, in the seed's style.

    "v2.1.0" gives "rekindle-v2-1-0" (prefix from ``FINE_TUNING_SUFFIX_PREFIX``). Providers
    accept at most 64 characters, and only lowercase letters, digits and dashes travel safely
    through every provider's model naming.
    """
    prefix = str(getattr(settings, "FINE_TUNING_SUFFIX_PREFIX", "rekindle"))
    raw = f"{prefix}-{version}" if prefix else version
    slug = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    return slug[:SUFFIX_MAX_LENGTH].rstrip("-")


def build_method(method: str, hyperparameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return OpenAI's ``method`` object for "sft" or "dpo" with the seed's defaults filled in.

    Defaults are n_epochs 3, batch_size and learning_rate_multiplier "auto" (and beta "auto" for
    DPO); a given hyperparameter replaces its default, a None value keeps the default.
    """
    method_type = METHOD_TYPES.get(method)
    if method_type is None:
        raise ProviderError(
            f"Unknown fine-tuning method {method!r}: use 'sft' or 'dpo'.",
            code="invalid_method",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    values = dict(DEFAULT_HYPERPARAMETERS)
    if method_type == "dpo":
        values["beta"] = "auto"
    values.update({key: value for key, value in (hyperparameters or {}).items() if value is not None})
    return {"type": method_type, method_type: {"hyperparameters": values}}


def string_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Return metadata as the string-to-string map providers accept, leaving out None values."""
    return {str(key): str(value) for key, value in (metadata or {}).items() if value is not None}
