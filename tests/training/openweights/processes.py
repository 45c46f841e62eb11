"""Helpers for the tests that run the trainer as a process: waiting, a long job, a gone pid."""

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.training.openweights.examples import sft_lines, write_jsonl
from training.openweights.files import read_json, read_lines
from training.providers.openweights import jobs


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


def long_job(
    provider: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    queued: list[str],
    *,
    examples: int = 16,
    n_epochs: int = 50,
) -> jobs.Job:
    """A job long enough to still run when the test acts; enqueueing (first or to resume) only records its id."""
    monkeypatch.setattr(jobs, "job_enqueue", queued.append)
    training_file = provider.upload_training_file(write_jsonl(tmp_path / "train.jsonl", sft_lines(examples)))
    job_id = provider.create_job(
        training_file=training_file, model="tiny", hyperparameters={"n_epochs": n_epochs, "batch_size": 1}
    )
    return jobs.job_get(job_id)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
