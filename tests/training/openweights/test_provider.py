"""The openweights provider end to end: a job runs the real trainer through django-q2 and its adapter answers."""

import hashlib
from pathlib import Path
from typing import Any

import pytest
from django_q.models import Task

from tests.training.openweights.examples import kto_lines, sft_lines, write_jsonl
from training.providers import ProviderError, get_provider
from training.providers.openweights import artifacts, runner

pytestmark = pytest.mark.django_db


def test_a_job_runs_the_trainer_through_django_q_then_its_adapter_is_stored_and_answers(
    openweights: Any, tmp_path: Path
) -> None:
    provider: Any = get_provider("openweights")
    training_file = provider.upload_training_file(write_jsonl(tmp_path / "train.jsonl", sft_lines(12)))
    validation_file = provider.upload_training_file(write_jsonl(tmp_path / "valid.jsonl", sft_lines(4)))
    job_id = provider.create_job(
        training_file=training_file,
        validation_file=validation_file,
        model="gpt-4o-2024-08-06",
        method="sft",
        hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate": 0.01, "lora_r": 4},
        metadata={"organization": "acme", "model_version": "v1.0.0"},
    )
    job = provider.get_job(job_id)
    assert (job.status, job.error) == ("succeeded", None)
    assert job.fine_tuned_model == "acme--v1-0-0"
    assert job.model == "tiny-qwen2"
    assert job.trained_tokens and job.trained_tokens > 0
    assert Task.objects.get(name=f"train-{job_id}").success
    losses = [e.message for e in provider.list_events(job_id) if e.message.startswith("Step ")]
    assert any("training loss=" in m for m in losses) and any("validation loss=" in m for m in losses)
    checkpoints = provider.list_checkpoints(job_id)
    assert [c.step for c in checkpoints] == [3, 6]
    assert all(c.train_loss is not None and c.valid_loss is not None for c in checkpoints)
    assert checkpoints[0].train_mean_token_accuracy is not None
    info = provider.adapter_info("acme--v1-0-0")
    weights = Path(artifacts.storage().path("openweights/adapters/acme/v1-0-0/adapter_model.safetensors"))
    assert info["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["base_model_name"] == "tiny-qwen2"
    assert (
        info["base_model_config_sha256"]
        == hashlib.sha256((Path(info["base_model"]) / "config.json").read_bytes()).hexdigest()
    )
    answer = provider.complete("acme--v1-0-0", "You write sales emails.", "Write a message for: Industry=SaaS")
    assert isinstance(answer, str)


def test_uploading_the_same_dataset_twice_gives_the_same_file(openweights: Any, tmp_path: Path) -> None:
    provider = get_provider("openweights")
    path = write_jsonl(tmp_path / "kto.jsonl", kto_lines(4))
    assert provider.upload_training_file(path) == provider.upload_training_file(path)


def test_create_job_refuses_unknown_hyperparameters_and_a_missing_base_model(openweights: Any) -> None:
    provider = get_provider("openweights")
    with pytest.raises(ProviderError, match="warmup") as raised:
        provider.create_job(training_file="file-x", model="m", hyperparameters={"warmup": 3})
    assert raised.value.status_code == 400
    openweights.OPENWEIGHTS_BASE_MODEL = ""
    with pytest.raises(ProviderError, match="OPENWEIGHTS_BASE_MODEL"):
        provider.create_job(training_file="file-x", model="m")


@pytest.mark.parametrize(
    "call",
    [
        lambda provider: provider.get_job("owjob-missing"),
        lambda provider: provider.get_job("../etc"),
        lambda provider: provider.complete("acme--v404", "s", "u"),
        lambda provider: provider.complete("gpt-4o", "s", "u"),
    ],
)
def test_an_unknown_job_or_adapter_is_a_404(openweights: Any, call: Any) -> None:
    with pytest.raises(ProviderError) as raised:
        call(get_provider("openweights"))
    assert raised.value.status_code == 404


def test_files_and_jobs_are_found_again_by_name_and_by_run(
    openweights: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "job_enqueue", lambda job_id: None)
    provider = get_provider("openweights")
    path = write_jsonl(tmp_path / "sft.jsonl", sft_lines(2))
    file_id = provider.upload_training_file(path, name="flywheel-run-train.jsonl")
    assert [f.id for f in provider.find_files(name="flywheel-run-train.jsonl")] == [file_id]
    assert provider.upload_training_file(path, name="flywheel-run-train.jsonl") == file_id
    first, second = (
        provider.create_job(training_file=file_id, model="m", metadata={"training_run_id": "run-1"}) for _ in range(2)
    )
    provider.create_job(training_file=file_id, model="m", metadata={"training_run_id": "run-2"})
    assert [job.id for job in provider.find_jobs(run_id="run-1")] == [first, second]
    provider.delete_file(file_id)
    provider.delete_file(file_id)
    assert provider.find_files(name="flywheel-run-train.jsonl") == []
