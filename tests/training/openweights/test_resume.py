"""A trainer that died resumes from its last epoch checkpoint, once per loss, and its events stay single."""

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.training.openweights.processes import long_job, wait_for
from training.openweights.files import read_lines
from training.providers import get_provider
from training.providers.openweights import jobs, runner

pytestmark = pytest.mark.django_db


def training_steps(job: jobs.Job) -> list[int]:
    """The steps of the job's training-loss events, in the order they were written."""
    return [row["step"] for row in read_lines(job.files.events) if "loss" in row.get("metrics", {})]


def lost_after_a_checkpoint(job: jobs.Job, *, resumes: int = 0) -> None:
    """Leave ``job`` as a dead trainer leaves it: running, one epoch checkpoint saved, no heartbeat."""
    checkpoint = job.files.trainer_output / "checkpoint-16"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}", encoding="utf-8")
    job.files.append(job.files.checkpoints, {"step": 16, "train_loss": 1.0, "path": str(checkpoint)})
    job.files.write_status("running", resumes=resumes)


def test_a_trainer_killed_after_its_first_epoch_resumes_from_the_checkpoint_and_finishes_without_duplicate_steps(
    openweights: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider: Any = get_provider("openweights")
    queued: list[str] = []
    job = long_job(provider, tmp_path, monkeypatch, queued, examples=16, n_epochs=2)
    queued.clear()  # the first enqueue, by create_job
    runner.launch(job, runner.run_config(job))  # the worker's part, without the worker
    wait_for(lambda: bool(read_lines(job.files.checkpoints)) and max(training_steps(job)) >= 18)
    os.killpg(int(json.loads((job.directory / jobs.PROCESS).read_text())["pgid"]), signal.SIGKILL)
    replayed = max(training_steps(job)) - 16
    openweights.OPENWEIGHTS_HEARTBEAT_TIMEOUT = 0.5
    time.sleep(0.6)
    assert provider.get_job(job.id).status == "running"
    assert queued == [job.id]
    assert "Resuming from checkpoint-16 (1 of 2)" in provider.list_events(job.id)[-1].message
    openweights.OPENWEIGHTS_HEARTBEAT_TIMEOUT = 30
    assert runner.run_job(job.id) == "succeeded"
    finished = provider.get_job(job.id)
    assert (finished.status, finished.error) == ("succeeded", None)
    assert replayed >= 2 and training_steps(job) == list(range(1, 33))  # the replayed steps are not written twice
    assert [checkpoint.step for checkpoint in provider.list_checkpoints(job.id)] == [16, 32]
    rows = read_lines(job.files.checkpoints)
    assert finished.trained_tokens == rows[-1]["trained_tokens"] > rows[0]["trained_tokens"] > 0
    assert provider.adapter_info(str(finished.fine_tuned_model))["sha256"] == job.state()["adapter_sha256"]
    assert runner.run_job(job.id) == "succeeded"  # a redelivered task does nothing


def test_a_dead_trainer_whose_resumes_are_used_up_fails_the_job_with_the_reason(
    openweights: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider: Any = get_provider("openweights")
    queued: list[str] = []
    job = long_job(provider, tmp_path, monkeypatch, queued)
    queued.clear()  # the first enqueue, by create_job
    lost_after_a_checkpoint(job, resumes=2)
    openweights.OPENWEIGHTS_HEARTBEAT_TIMEOUT = 0
    failed = provider.get_job(job.id)
    assert failed.status == "failed" and queued == []
    assert failed.error is not None and "no heartbeat" in failed.error
    assert "resumed 2 times already (OPENWEIGHTS_MAX_RESUMES is 2)" in failed.error
    assert provider.get_job(job.id).status == "failed"


def test_resumes_can_be_switched_off(openweights: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider: Any = get_provider("openweights")
    queued: list[str] = []
    job = long_job(provider, tmp_path, monkeypatch, queued)
    queued.clear()  # the first enqueue, by create_job
    lost_after_a_checkpoint(job)
    openweights.OPENWEIGHTS_HEARTBEAT_TIMEOUT = 0
    openweights.OPENWEIGHTS_MAX_RESUMES = 0
    assert provider.get_job(job.id).status == "failed" and queued == []


def test_many_pollers_that_find_the_same_dead_trainer_resume_it_once(
    openweights: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider: Any = get_provider("openweights")
    queued: list[str] = []
    job = long_job(provider, tmp_path, monkeypatch, queued)
    queued.clear()  # the first enqueue, by create_job
    lost_after_a_checkpoint(job)
    openweights.OPENWEIGHTS_HEARTBEAT_TIMEOUT = 0
    start = threading.Barrier(8)
    seen: list[str] = []

    def poll() -> None:
        start.wait()
        seen.append(provider.get_job(job.id).status)

    pollers = [threading.Thread(target=poll) for _ in range(8)]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join()
    assert queued == [job.id]
    assert set(seen) == {"running"}
    assert sum("Resuming from" in event.message for event in provider.list_events(job.id)) == 1
    assert job.state()["resumes"] == 1


def test_a_trainer_killed_under_a_living_worker_is_resumed_by_its_supervisor(
    openweights: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider: Any = get_provider("openweights")
    queued: list[str] = []
    job = long_job(provider, tmp_path, monkeypatch, queued)
    queued.clear()  # the first enqueue, by create_job
    lost_after_a_checkpoint(job)
    assert runner.finish(job, -9) == "resuming"
    assert queued == [job.id] and provider.get_job(job.id).status == "running"
    assert runner.finish(job, -9) == "resuming"  # a stale supervisor of attempt 0 leaves attempt 1 alone
    assert queued == [job.id]
