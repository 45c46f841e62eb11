"""The ``openweights`` provider: LoRA adapters on an open base model, trained by our own trainer.

Jobs run on a django-q2 cluster as a trainer subprocess (:mod:`.runner`), their state lives in
files (:mod:`.jobs`), adapters and datasets in shared storage (:mod:`.artifacts`), and answers
come from vLLM or from this process (:mod:`.serving`). The base model is
``OPENWEIGHTS_BASE_MODEL``: a local Hugging Face directory (or a hub id where a hub is reachable).
"""

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from rest_framework import status

from training.providers.base import (
    DEFAULT_HYPERPARAMETERS,
    Checkpoint,
    FileInfo,
    FineTuningProvider,
    JobEvent,
    JobInfo,
    ProviderError,
    string_metadata,
)
from training.providers.openweights import artifacts, jobs, runner, serving

HYPERPARAMETERS = frozenset(
    {
        "n_epochs",
        "batch_size",
        "learning_rate",
        "learning_rate_multiplier",
        "beta",
        "max_length",
        "seed",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
    }
)


def base_model() -> tuple[str, str, str | None]:
    """Return ``OPENWEIGHTS_BASE_MODEL``, its shown name and the sha256 of its ``config.json``."""
    path = str(getattr(settings, "OPENWEIGHTS_BASE_MODEL", "") or "")
    if not path:
        raise ProviderError(
            "OPENWEIGHTS_BASE_MODEL is not set: name the base model's directory (Hugging Face format).",
            code="not_configured",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    config = Path(path) / "config.json"
    digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None
    name = str(getattr(settings, "OPENWEIGHTS_BASE_MODEL_NAME", "") or "") or Path(path).name or path
    return path, name, digest


def trainer_options(hyperparameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The trainer's config from the seed's defaults, the settings and the job's hyperparameters."""
    given = {key: value for key, value in (hyperparameters or {}).items() if value is not None}
    unknown = sorted(set(given) - HYPERPARAMETERS)
    if unknown:
        raise ProviderError(
            f"Unknown hyperparameters for openweights: {', '.join(unknown)}.",
            code="invalid_hyperparameters",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    values: dict[str, Any] = {
        **DEFAULT_HYPERPARAMETERS,
        "max_length": int(getattr(settings, "OPENWEIGHTS_MAX_LENGTH", 1024)),
        "seed": int(getattr(settings, "OPENWEIGHTS_SEED", 42)),
        "lora_r": int(getattr(settings, "OPENWEIGHTS_LORA_RANK", 16)),
        "lora_alpha": int(getattr(settings, "OPENWEIGHTS_LORA_ALPHA", 32)),
        "lora_dropout": float(getattr(settings, "OPENWEIGHTS_LORA_DROPOUT", 0.05)),
        "lora_target_modules": getattr(settings, "OPENWEIGHTS_LORA_TARGET_MODULES", "all-linear"),
        **given,
    }
    lora = {name: values.pop(f"lora_{name}") for name in ("r", "alpha", "dropout", "target_modules")}
    return {**values, "lora": lora}


def pool_and_version(metadata: Mapping[str, Any] | None, suffix: str | None, job_id: str) -> tuple[str, str]:
    """The adapter's pool (organization slug, "global") and version, from the run's metadata."""
    data = string_metadata(metadata)
    return data.get("organization") or "global", data.get("model_version") or suffix or job_id


class OpenWeightsProvider(FineTuningProvider):
    """Trains LoRA adapters with TRL (sft, dpo, kto) and serves them through vLLM or in-process."""

    name = "openweights"
    supported_methods = frozenset({"sft", "dpo", "kto"})
    poll_interval = 10.0  # a job on our own GPUs: minutes long, and a poll reads local files only

    def upload_training_file(self, path: str | Path, *, name: str | None = None) -> str:
        return artifacts.dataset_store(path, name)

    def find_files(self, *, name: str) -> list[FileInfo]:
        found = artifacts.dataset_find(name)
        return [found] if found is not None else []

    def delete_file(self, file_id: str) -> None:
        artifacts.dataset_delete(file_id)

    def find_jobs(self, *, run_id: str) -> list[JobInfo]:
        return [jobs.job_info(job) for job in jobs.jobs_of_run(run_id)]

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
        """Write the job and queue its trainer; ``model`` is noted, the base is ``OPENWEIGHTS_BASE_MODEL``."""
        self.ensure_method_supported(method)
        path, name, digest = base_model()
        options = trainer_options(hyperparameters)
        pool, version = pool_and_version(metadata, suffix, "job")
        request = {
            "method": "sft" if method == "supervised" else method,
            "base_model": path,
            "base_model_name": name,
            "base_model_config_sha256": digest,
            "requested_model": model,
            "training_file": training_file,
            "validation_file": validation_file,
            "trainer": options,
            "pool": pool,
            "version": version,
            "model_id": artifacts.model_id_for(pool, version),
            "metadata": string_metadata(metadata),
        }
        job = jobs.job_create(request)
        runner.job_enqueue(job.id)
        return job.id

    def get_job(self, job_id: str) -> JobInfo:
        return jobs.job_info(jobs.job_get(job_id))

    def list_events(self, job_id: str) -> list[JobEvent]:
        return jobs.job_events(jobs.job_get(job_id))

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        return jobs.job_checkpoints(jobs.job_get(job_id))

    def cancel_job(self, job_id: str) -> JobInfo:
        return jobs.job_cancel(jobs.job_get(job_id))

    def complete(self, model_id: str, system_prompt: str, user_prompt: str) -> str:
        """Ask the vLLM server when ``OPENWEIGHTS_SERVING_URL`` is set, else generate in-process."""
        if serving.serving_url():
            return serving.VLLMServer.from_settings().complete(model_id, system_prompt, user_prompt)
        manifest = artifacts.adapter_manifest(model_id)
        adapter = artifacts.adapter_local_dir(model_id)
        base = str(manifest.get("base_model") or base_model()[0])
        return serving.generate_locally(base, adapter, str(manifest.get("sha256", "")), system_prompt, user_prompt)

    def adapter_info(self, model_id: str) -> dict[str, Any]:
        """The stored adapter's manifest: base model, its config hash, sha256, pool, version."""
        return artifacts.adapter_manifest(model_id)

    def load_adapter(self, model_id: str) -> None:
        """Load the adapter into the vLLM server (a retried load of a loaded adapter succeeds)."""
        server = self.serving_server()
        server.load_adapter(model_id, artifacts.adapter_local_dir(model_id))

    def unload_adapter(self, model_id: str) -> None:
        """Unload the adapter from the vLLM server (one not loaded counts as unloaded)."""
        self.serving_server().unload_adapter(model_id)

    def serving_server(self) -> serving.VLLMServer:
        if not serving.serving_url():
            raise ProviderError(
                "OPENWEIGHTS_SERVING_URL is not set: there is no vLLM server to load adapters into.",
                code="not_configured",
                status_code=status.HTTP_400_BAD_REQUEST,
            )
        return serving.VLLMServer.from_settings()
