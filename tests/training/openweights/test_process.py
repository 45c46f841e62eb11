"""The trainer as a process: cancel ends its process group; a trainer killed with its worker is found dead."""

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.training.openweights.processes import gone, long_job, training_pid
from training.providers import get_provider
from training.providers.openweights import jobs, runner


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
    assert "no checkpoint to resume from" in failed.error  # killed in its first epoch
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
