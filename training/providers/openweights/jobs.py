"""Open-weights jobs as directories: the request, the trainer's files and what they mean now.

A job is ``OPENWEIGHTS_JOBS_DIR/<job id>/`` holding ``job.json`` (the request), the trainer's
files (:mod:`training.openweights.files`), ``process.json`` (where the trainer runs) and, once
asked, a ``cancel`` marker. Every reader derives the state from them; a running job whose
heartbeat is older than ``OPENWEIGHTS_HEARTBEAT_TIMEOUT`` seconds has lost its trainer.

A lost trainer is recovered on the spot by whichever reader sees it first (one ``recovered-<n>``
marker per attempt, created exclusively, so two pollers never both act): the job is queued again
to resume from its last epoch checkpoint, at most ``OPENWEIGHTS_MAX_RESUMES`` times, and fails
with the reason when there is no checkpoint or no resume left. No job stays "running" forever.
"""

import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django_q.tasks import async_task
from rest_framework import status

from training.openweights.files import RunFiles, read_json, read_lines, write_json_atomic
from training.providers.base import TERMINAL_STATUSES, Checkpoint, JobEvent, JobInfo, ProviderError

JOB = "job.json"
PROCESS = "process.json"
CANCEL = "cancel"
CLAIM = "claim"
LOG = "trainer.log"
RECOVERED = "recovered-{attempt}"
RUNNING = frozenset({"running", "trained"})  # "trained": the adapter is saved, not yet stored
RESUMING = "resuming"  # queued again to resume from a checkpoint; reads "running"


def jobs_dir() -> Path:
    """``OPENWEIGHTS_JOBS_DIR``, or ``MEDIA_ROOT/openweights/jobs`` when it is blank."""
    configured = str(getattr(settings, "OPENWEIGHTS_JOBS_DIR", "") or "")
    return Path(configured) if configured else Path(str(settings.MEDIA_ROOT)) / "openweights" / "jobs"


def heartbeat_timeout() -> float:
    return float(getattr(settings, "OPENWEIGHTS_HEARTBEAT_TIMEOUT", 300))


def max_resumes() -> int:
    return max(0, int(getattr(settings, "OPENWEIGHTS_MAX_RESUMES", 2)))


@dataclass(frozen=True)
class Job:
    """One job's directory and its request."""

    id: str
    directory: Path
    request: dict[str, Any]

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.directory)

    @property
    def cancelled(self) -> bool:
        return (self.directory / CANCEL).exists()

    def state(self) -> dict[str, Any]:
        return read_json(self.files.status)

    @property
    def attempt(self) -> int:
        """How many times the job has been resumed (0 for its first run)."""
        return int(self.state().get("resumes") or 0)


def job_enqueue(job_id: str) -> None:
    """Queue the job's task, ``runner.run_job``, on ``OPENWEIGHTS_Q_CLUSTER`` (the normal cluster if blank)."""
    cluster = str(getattr(settings, "OPENWEIGHTS_Q_CLUSTER", "") or "") or None
    async_task("training.providers.openweights.runner.run_job", job_id, cluster=cluster, task_name=f"train-{job_id}")


def job_create(request: dict[str, Any]) -> Job:
    """Make a new job directory with its request and the status "queued"."""
    job_id = f"owjob-{uuid.uuid4().hex}"
    directory = jobs_dir() / job_id
    directory.mkdir(parents=True)
    created = time.time_ns()
    write_json_atomic(directory / JOB, {**request, "id": job_id, "created_at": created // 10**9, "created_ns": created})
    job = job_get(job_id)
    job.files.write_status("queued")
    return job


def job_get(job_id: str) -> Job:
    """Return the job, or raise a 404-class ``ProviderError`` for an unknown or malformed id."""
    directory = jobs_dir() / job_id
    request = read_json(directory / JOB) if job_id.startswith("owjob-") and "/" not in job_id else {}
    if not request:
        raise ProviderError(
            f"No open-weights job {job_id!r}.", code="job_not_found", status_code=status.HTTP_404_NOT_FOUND
        )
    return Job(id=job_id, directory=directory, request=request)


def jobs_of_run(run_id: str) -> list[Job]:
    """The jobs whose metadata names the training run ``run_id``, oldest first."""
    found = []
    for path in jobs_dir().glob(f"owjob-*/{JOB}"):
        request = read_json(path)
        if request.get("metadata", {}).get("training_run_id") == run_id:
            found.append(Job(id=path.parent.name, directory=path.parent, request=request))
    return sorted(found, key=lambda job: (job.request.get("created_ns", 0), job.id))


def stale_reason(job: Job, state: dict[str, Any]) -> str | None:
    """Say why a running job is dead (no heartbeat for too long), or None while it lives."""
    last = max(job.files.last_beat() or 0.0, float(state.get("updated_at") or 0.0))
    silent = time.time() - last
    if silent <= heartbeat_timeout():
        return None
    return (
        f"The trainer stopped: no heartbeat for {silent:.0f} s (OPENWEIGHTS_HEARTBEAT_TIMEOUT is "
        f"{heartbeat_timeout():.0f} s); its worker was probably killed."
    )


def current_status(job: Job) -> dict[str, Any]:
    """The job's state now: cancelled once asked, resumed or failed once its heartbeat went stale."""
    state = job.state()
    if job.cancelled and state.get("status") not in TERMINAL_STATUSES:
        job.files.write_status("cancelled")
        return job.state()
    if state.get("status") in RUNNING:
        reason = stale_reason(job, state)
        if reason is not None:
            return job_recover(job, reason=reason, attempt=int(state.get("resumes") or 0))
    return state


def resume_point(job: Job) -> Path | None:
    """The last epoch checkpoint the trainer finished saving, or None when there is none."""
    for row in reversed(read_lines(job.files.checkpoints)):
        path = Path(str(row.get("path") or ""))
        if row.get("path") and (path / "trainer_state.json").is_file():
            return path
    return None


def take(job: Job, attempt: int) -> bool:
    """Claim the recovery of ``attempt`` for this caller; False when another caller has it."""
    try:
        os.close(os.open(job.directory / RECOVERED.format(attempt=attempt), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def job_recover(job: Job, *, reason: str, attempt: int) -> dict[str, Any]:
    """Resume ``attempt``'s lost trainer from its last checkpoint, or fail the job with ``reason``.

    Only the caller that takes the attempt's marker acts; the others return the state as it is.
    The job is queued again unless it has no checkpoint or has used ``OPENWEIGHTS_MAX_RESUMES``.
    """
    state = job.state()
    if not take(job, attempt) or state.get("status") not in RUNNING or int(state.get("resumes") or 0) != attempt:
        return state
    terminate(job, float(getattr(settings, "OPENWEIGHTS_CANCEL_GRACE", 5)))  # a frozen trainer on this machine
    checkpoint = resume_point(job)
    if checkpoint is None or attempt >= max_resumes():
        why = (
            "There is no checkpoint to resume from."
            if checkpoint is None
            else (f"It was resumed {attempt} times already (OPENWEIGHTS_MAX_RESUMES is {max_resumes()}).")
        )
        return fail(job, f"{reason} {why}")
    job.files.event(f"{reason} Resuming from {checkpoint.name} ({attempt + 1} of {max_resumes()}).", level="warn")
    job.files.write_status(RESUMING, resumes=attempt + 1, resume_from=str(checkpoint))
    try:
        job_enqueue(job.id)
    except Exception as exc:
        return fail(job, f"{reason} It could not be queued again to resume: {exc}")
    return job.state()


def fail(job: Job, error: str) -> dict[str, Any]:
    job.files.event(error[:500], level="error")
    job.files.write_status("failed", error=error)
    return job.state()


def job_info(job: Job) -> JobInfo:
    """The job as ``JobInfo``: "trained" and "resuming" read "running" until the adapter is stored."""
    state = current_status(job)
    value = str(state.get("status") or "queued")
    public = "running" if value in {"trained", RESUMING} else value
    finished = int(state["updated_at"]) if public in TERMINAL_STATUSES and state.get("updated_at") else None
    return JobInfo(
        id=job.id,
        status=public,
        model=str(job.request.get("base_model_name") or ""),
        fine_tuned_model=state.get("fine_tuned_model") if public == "succeeded" else None,
        trained_tokens=state.get("trained_tokens"),
        error=state.get("error") if public == "failed" else None,
        finished_at=finished,
        created_at=job.request.get("created_at"),
    )


def job_events(job: Job) -> list[JobEvent]:
    rows = read_lines(job.files.events)
    return [
        JobEvent(
            created_at=int(row.get("created_at", 0)),
            level=str(row.get("level", "info")),
            message=str(row.get("message", "")),
        )
        for row in rows
    ]


def job_checkpoints(job: Job) -> list[Checkpoint]:
    """The trainer's per-epoch checkpoints, by ascending step."""
    checkpoints = [
        Checkpoint(
            step=int(row.get("step", 0)),
            train_loss=row.get("train_loss"),
            valid_loss=row.get("valid_loss"),
            train_mean_token_accuracy=row.get("train_mean_token_accuracy"),
            valid_mean_token_accuracy=row.get("valid_mean_token_accuracy"),
            fine_tuned_model_checkpoint=f"{job.request.get('model_id', job.id)}:ckpt-step-{row.get('step', 0)}",
        )
        for row in read_lines(job.files.checkpoints)
    ]
    return sorted(checkpoints, key=lambda checkpoint: checkpoint.step)


def record_process(job: Job, pid: int) -> None:
    """Remember where the trainer runs, so that a cancel on this machine can end its group."""
    write_json_atomic(job.directory / PROCESS, {"pid": pid, "pgid": pid, "host": socket.gethostname()})


def terminate(job: Job, grace: float, reap: Callable[[], object] | None = None) -> bool:
    """End the trainer's process group when it runs on this machine; True when it is gone.

    ``reap`` is the trainer's parent's ``Popen.poll``, so that an exited trainer does not linger
    as a zombie that still counts as alive.
    """
    process = read_json(job.directory / PROCESS)
    pgid = process.get("pgid")
    if not isinstance(pgid, int) or process.get("host") != socket.gethostname():
        return False
    if not runs_trainer(pgid):
        return not group_alive(pgid)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if reap is not None:
                reap()
            if not group_alive(pgid):
                return True
            time.sleep(0.05)
    return not group_alive(pgid)


def runs_trainer(pid: int) -> bool:
    """False when ``pid`` now belongs to another program (a recycled id); True where unknowable."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # gone where /proc exists; no /proc: cannot tell
    except OSError:
        return True
    return not command or b"training.openweights.train" in command  # empty: a zombie not yet reaped


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def job_cancel(job: Job) -> JobInfo:
    """Mark the job cancelled (its supervisor, wherever it runs, stops the trainer) and stop it here."""
    if job.state().get("status") in TERMINAL_STATUSES:
        return job_info(job)
    (job.directory / CANCEL).write_text(str(time.time()), encoding="utf-8")
    terminate(job, float(getattr(settings, "OPENWEIGHTS_CANCEL_GRACE", 5)))
    job.files.event("Job cancelled.")
    job.files.write_status("cancelled")
    return job_info(job)
