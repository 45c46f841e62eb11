"""The django-q2 task that runs one open-weights job: fetch the data, run the trainer, store.

``job_enqueue`` sends :func:`run_job` to the cluster named by ``OPENWEIGHTS_Q_CLUSTER`` (an
``ALT_CLUSTERS`` entry served by GPU workers started with ``Q_CLUSTER_NAME=<name> manage.py
qcluster``), or to the normal cluster when it is blank. The task starts the trainer with
``OPENWEIGHTS_LAUNCHER`` (default: this Python; e.g. ``accelerate launch`` for several GPUs) in a
process group of its own, waits for it while watching for a cancel, then stores the adapter and
marks the job succeeded, or failed with the trainer's own error. A trainer that vanished without
an error of its own (killed) is recovered like one whose heartbeat went stale: queued again to
resume from its last checkpoint (:func:`~training.providers.openweights.jobs.job_recover`). Each
attempt is claimed once, so a redelivered task and a resume never both run it. The worker's
timeout must exceed the longest training.
"""

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from training.openweights.config import RunConfig
from training.openweights.files import write_json_atomic
from training.providers.base import TERMINAL_STATUSES
from training.providers.openweights import artifacts, jobs
from training.providers.openweights.jobs import (
    CLAIM,
    LOG,
    RUNNING,
    Job,
    job_get,
    job_recover,
    record_process,
    terminate,
)

TRAINER_MODULE = "training.openweights.train"
WATCH_SECONDS = 0.2
LOG_TAIL_CHARS = 2000


def job_enqueue(job_id: str) -> None:
    """Queue :func:`run_job` on the open-weights cluster (synchronously under ``Q_SYNC``)."""
    jobs.job_enqueue(job_id)


def claim(job: Job, attempt: int = 0) -> bool:
    """Take the job's ``attempt`` for this task; a redelivered task finds it taken and does nothing."""
    name = CLAIM if attempt == 0 else f"{CLAIM}-{attempt}"
    try:
        descriptor = os.open(job.directory / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(descriptor, f"{os.getpid()}\n".encode())
    os.close(descriptor)
    return True


def run_config(job: Job) -> Path:
    """Fetch the job's datasets and write the trainer's config file; return its path."""
    request = job.request
    data = job.directory / "data"
    train_file = artifacts.dataset_fetch(request["training_file"], data / "train.jsonl")
    valid_id = request.get("validation_file")
    valid_file = artifacts.dataset_fetch(valid_id, data / "valid.jsonl") if valid_id else None
    config = RunConfig.from_mapping(
        {
            **request.get("trainer", {}),
            "base_model": request["base_model"],
            "method": request["method"],
            "train_file": str(train_file),
            "valid_file": str(valid_file) if valid_file else None,
            "output_dir": str(job.directory),
            "heartbeat_seconds": float(getattr(settings, "OPENWEIGHTS_HEARTBEAT_SECONDS", 10)),
            "resume_from_checkpoint": job.state().get("resume_from") if job.attempt else None,
        }
    )
    path = job.directory / "run.json"
    write_json_atomic(path, config.to_dict())
    return path


def trainer_command(config_path: Path) -> list[str]:
    launcher = shlex.split(str(getattr(settings, "OPENWEIGHTS_LAUNCHER", "") or "")) or [sys.executable]
    return [*launcher, "-m", TRAINER_MODULE, "--config", str(config_path)]


def launch(job: Job, config_path: Path) -> subprocess.Popen[bytes]:
    """Start the trainer in a new session (its own process group), logging to ``trainer.log``."""
    base = str(settings.BASE_DIR)
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if Path(job.request["base_model"]).is_dir():
        environment.setdefault("HF_HUB_OFFLINE", "1")  # a local base model: nothing to fetch from a hub
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [base, environment.get("PYTHONPATH", "")]))
    with (job.directory / LOG).open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - the command is this project's module and a configured launcher
            trainer_command(config_path),
            cwd=base,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    record_process(job, process.pid)
    return process


def supervise(job: Job, process: subprocess.Popen[bytes]) -> int:
    """Wait for the trainer; end its group as soon as the job is cancelled. Return its exit code."""
    while process.poll() is None:
        if job.cancelled:
            terminate(job, float(getattr(settings, "OPENWEIGHTS_CANCEL_GRACE", 5)), reap=process.poll)
            process.wait()
            break
        time.sleep(WATCH_SECONDS)
    return int(process.returncode)


def log_tail(job: Job) -> str:
    try:
        return (job.directory / LOG).read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:].strip()
    except OSError:
        return ""


def finish(job: Job, code: int, attempt: int = 0) -> str:
    """Record how attempt ``attempt``'s trainer ended: stored, cancelled, resumed or failed.

    A trainer that failed says so itself; one that exited while still "running" was killed and
    is recovered (resumed from its checkpoint, or failed with the end of its log). An attempt
    that was already recovered by a poller leaves the job to its successor.
    """
    state = job.state()
    if int(state.get("resumes") or 0) != attempt:
        return str(state.get("status"))
    if job.cancelled:
        job.files.write_status("cancelled")
    elif code == 0 and state.get("status") == "trained":
        store(job)
    elif state.get("status") in RUNNING:
        job_recover(job, reason=f"The trainer exited with code {code}. {log_tail(job)}".strip(), attempt=attempt)
    return str(job.state().get("status"))


def store(job: Job) -> None:
    """Store the adapter under its pool and version, then mark the job succeeded."""
    job.files.beat()
    request = job.request
    manifest: dict[str, Any] = {
        key: request.get(key) for key in ("base_model_name", "base_model_config_sha256", "method", "pool", "version")
    }
    manifest.update(base_model=request["base_model"], job_id=job.id)
    stored = artifacts.adapter_store(job.files.adapter, request["model_id"], manifest)
    job.files.event(f"Adapter stored as {stored['model_id']} (sha256 {stored['sha256'][:12]}…).")
    job.files.write_status("succeeded", fine_tuned_model=stored["model_id"], adapter_sha256=stored["sha256"])


def run_job(job_id: str) -> str:
    """The task: run the job's trainer to its end unless it is taken, ended or cancelled."""
    job = job_get(job_id)
    attempt = job.attempt
    if job.state().get("status") in TERMINAL_STATUSES or job.cancelled or not claim(job, attempt):
        return str(job.state().get("status"))
    job.files.write_status("running", supervisor_pid=os.getpid())
    job.files.beat()
    try:
        config_path = run_config(job)
        process = launch(job, config_path)
    except Exception as exc:
        job.files.write_status("failed", error=f"The trainer could not start: {exc}")
        raise
    job.files.event(f"Trainer started (pid {process.pid}).")
    return finish(job, supervise(job, process), attempt)
