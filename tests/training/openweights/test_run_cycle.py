"""A whole training run on the openweights provider: export, the real trainer, register and test."""

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flywheel.models import Organization
from registry.models import RegisteredModel
from tests.factories import OrganizationFactory
from tests.training.helpers import failed_tasks, make_labels, run_due_schedules
from training.models import TrainingRun
from training.providers.openweights import artifacts
from training.services import training_run_start

pytestmark = pytest.mark.django_db


def test_a_run_on_openweights_trains_a_real_adapter_registers_and_tests_it(
    openweights: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    openweights.FINE_TUNING_PROVIDER = "openweights"
    openweights.TRAINING_MIN_EXAMPLES = 10
    organization: Organization = OrganizationFactory.create(slug="acme")
    make_labels(organization, positives=12)
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_start(organization=organization, triggered_by="command", actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        run_due_schedules()  # the poll finds the job succeeded, then register and test follow
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert failed_tasks() == []
    assert run.provider == "openweights" and run.provider_job_id.startswith("owjob-")
    assert run.fine_tuned_model == f"acme--{run.model_version.replace('.', '-')}"
    assert run.trained_tokens and run.trained_tokens > 0
    assert any("training loss=" in event["message"] for event in run.events)
    assert [checkpoint["step"] for checkpoint in run.checkpoints] == [12, 24, 36]
    assert all(checkpoint["train_loss"] is not None for checkpoint in run.checkpoints)
    assert isinstance(run.test_output, str)
    model = run.registered_model
    assert model is not None and model.status == RegisteredModel.Status.READY
    assert (model.model_id, model.provider) == (run.fine_tuned_model, "openweights")
    weights = artifacts.adapter_local_dir(model.model_id) / "adapter_model.safetensors"
    config = Path(openweights.OPENWEIGHTS_BASE_MODEL) / "config.json"
    assert model.adapter_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert model.base_model_config_sha256 == hashlib.sha256(config.read_bytes()).hexdigest()
    assert model.base_model == "tiny-qwen2"
