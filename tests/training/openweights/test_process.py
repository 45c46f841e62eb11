"""The trainer as a process: cancel ends its process group; a trainer killed with its worker is found dead."""

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.training.openweights.examples import sft_lines, write_jsonl
from training.openweights.files import read_json, read_lines
from training.providers import get_provider
from training.providers.openweights import jobs, runner


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def training_pid(job: jobs.Job) -> int:
    """Wait until the trainer has logged its first training step and return its pid."""
    wait_for(lambda: any(row.get("step") for row in read_lines(job.files.events)))
    pid = int(read_json(job.directory / jobs.PROCESS)["pid"])
    assert read_json(job.files.heartbeat)["pid"] == pid  # the trainer beats, not its supervisor
    return pid


def long_job(provider: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queued: list[str]) -> jobs.Job:
    """A job long enough to still run when the test acts; enqueueing only records its id."""
    monkeypatch.setattr(runner, "job_enqueue", queued.append)
    training_file = provider.upload_training_file(write_jsonl(tmp_path / "train.jsonl", sft_lines(16)))
    job_id = provider.create_job(
        training_file=training_file, model="tiny", hyperparameters={"n_epochs": 50, "batch_size": 1}
    )
    return jobs.job_get(job_id)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cancel_ends_the_trainer_process_and_the_job_is_cancelled(
    openweights: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = get_provider("openweights")
    queued: list[str] = []
    job = long_job(provider, tmp_path, monkeypatch, queued)
    supervisor = threading.Thread(target=runner.run_job, args=(job.id,), daemon=True)
    supervisor.start()
    pid = training_pid(job)
    cancelled = provider.cancel_job(job.id)
    supervisor.join(timeout=10)
    assert not supervisor.is_alive()
    assert gone(pid)
    assert cancelled.status == "cancelled"
    assert provider.get_job(job.id).status == "cancelled"
    assert runner.run_job(job.id) == "cancelled"  # a redelivered task does not start it again


def test_a_trainer_killed_with_its_worker_fails_the_job_once_its_heartbeat_is_stale(
    openweights: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = get_provider("openweights")
    job = long_job(provider, tmp_path, monkeypatch, [])
    process = runner.launch(job, runner.run_config(job))  # the worker's part, without the worker
    pid = training_pid(job)
    assert provider.get_job(job.id).status == "running"
    os.killpg(pid, signal.SIGKILL)
    process.wait()
    openweights.OPENWEIGHTS_HEARTBEAT_TIMEOUT = 0.5
    time.sleep(0.6)
    failed = provider.get_job(job.id)
    assert failed.status == "failed"
    assert failed.error is not None and "no heartbeat" in failed.error
    assert provider.list_events(job.id)[-1].level == "error"


def test_a_trainer_that_exits_without_an_adapter_fails_the_job_with_the_end_of_its_log(
    openweights: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = get_provider("openweights")
    job = long_job(provider, tmp_path, monkeypatch, [])
    (job.directory / jobs.LOG).write_text("Traceback ...\nRuntimeError: out of memory\n", encoding="utf-8")
    job.files.write_status("running")
    assert runner.finish(job, -9) == "failed"
    error = provider.get_job(job.id).error or ""
    assert "exited with code -9" in error and "out of memory" in error


def test_a_queued_job_is_never_stale_and_a_cancelled_one_never_starts(
    openweights: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = get_provider("openweights")
    job = long_job(provider, tmp_path, monkeypatch, [])
    openweights.OPENWEIGHTS_HEARTBEAT_TIMEOUT = 0
    assert provider.get_job(job.id).status == "queued"
    assert provider.cancel_job(job.id).status == "cancelled"
    assert runner.run_job(job.id) == "cancelled"
    assert not (job.directory / jobs.PROCESS).exists()
