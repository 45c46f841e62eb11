"""A stateful stand-in of the OpenAI API, served over real HTTP on loopback.

The real ``openai`` client talks to it through its whole HTTP stack (headers, multipart, retries,
timeouts), so tests exercise what production runs. It keeps files, jobs, models and events,
checks request bodies the way the API does (answering 400 with OpenAI's error shape), records
every request, and injects faults on demand:

    fake.fail_next("jobs.retrieve", 429)             # next call answers 429, then normal
    fake.fail_next("files.create", 500, times=3)     # next three calls answer 500
    fake.delay_next("models.retrieve", 5.0)          # next call answers after 5 s
    fake.fail_after("jobs.create", 502)              # creates the job, then answers 502
    fake.delay_after("files.create", 2.0)            # creates the file, answers 2 s later
    fake.fail_jobs("The job failed due to an invalid training file.")

Routes are named ``files.create``, ``files.list``, ``files.retrieve``, ``files.delete``,
``jobs.create``, ``jobs.list``, ``jobs.retrieve``, ``jobs.cancel``, ``jobs.events``,
``jobs.checkpoints``, ``models.retrieve`` and ``chat.completions`` (see
:mod:`tests.training.fake_openai_wire`).
"""

import contextlib
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.training.fake_openai_wire import (
    DEFAULT_MODELS,
    JOB_STEPS,
    TERMINAL,
    Answer,
    Fault,
    JobFailure,
    RecordedRequest,
    Server,
    api_error,
    dataset_problem,
    metadata_filter,
    page,
    public,
    receive,
    send,
)


@dataclass
class FakeOpenAI:
    """The fake API's state and its HTTP server; ``start()`` it, point the client at ``base_url``."""

    api_key: str = "sk-test"
    requests: list[RecordedRequest] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_files: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    job_failure: JobFailure | None = None

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        for model_id in DEFAULT_MODELS:
            self.add_model(model_id)

    # --- control -----------------------------------------------------------------------------

    def start(self) -> "FakeOpenAI":
        self._server = Server(self)
        # A short poll interval keeps stop() (and so each test's teardown) from waiting half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping on a delay fault
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def add_model(
        self, model_id: str, *, shutdown_date: date | str | int | None = None, owned_by: str = "system"
    ) -> None:
        """Make a model known; ``shutdown_date`` is sent as given (a date as its ISO string)."""
        shutdown = shutdown_date.isoformat() if isinstance(shutdown_date, date) else shutdown_date
        with self._lock:
            self.models[model_id] = {
                "id": model_id,
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": owned_by,
                "shutdown_date": shutdown,
            }

    def fail_next(self, route: str, status: int, *, times: int = 1, message: str | None = None) -> None:
        """Answer the next ``times`` calls of ``route`` with ``status``."""
        text = message or f"Injected {status} for {route}."
        self._queue(route, [Fault(status=status, message=text) for _ in range(times)])

    def delay_next(self, route: str, seconds: float, *, times: int = 1) -> None:
        """Make the next ``times`` calls of ``route`` wait ``seconds`` before answering normally."""
        self._queue(route, [Fault(delay=seconds) for _ in range(times)])

    def fail_after(self, route: str, status: int, *, times: int = 1) -> None:
        """Carry out the next ``times`` calls of ``route`` (create the file or job), then answer ``status``."""
        text = f"Injected {status} for {route}, after the call was carried out."
        self._queue(route, [Fault(status=status, message=text, after=True) for _ in range(times)])

    def delay_after(self, route: str, seconds: float, *, times: int = 1) -> None:
        """Carry out the next ``times`` calls of ``route`` at once, and answer ``seconds`` later."""
        self._queue(route, [Fault(delay=seconds, after=True) for _ in range(times)])

    def fail_jobs(self, message: str, *, code: str = "training_failed") -> None:
        """Make every job end failed with this error instead of succeeding."""
        self.job_failure = JobFailure(message=message, code=code)

    def requests_to(self, route: str) -> list[RecordedRequest]:
        with self._lock:
            return [request for request in self.requests if request.route == route]

    def _queue(self, route: str, faults: list[Fault]) -> None:
        with self._lock:
            self.faults.setdefault(route, deque()).extend(faults)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}abcdef"

    # --- HTTP --------------------------------------------------------------------------------

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Record the request, apply any fault queued for its route, then answer it."""
        request, params = receive(handler)
        with self._lock:
            self.requests.append(request)
            queue = self.faults.get(request.route)
            fault = queue.popleft() if queue else None
        answer = self._answer(request, params) if fault is None or fault.after else None
        if fault is not None and fault.delay:
            self._stopping.wait(fault.delay)
        if fault is not None and fault.status is not None:
            answer = api_error(fault.status, fault.message, code="injected")
        if answer is None:
            answer = self._answer(request, params)
        # The client may have given up (timeout) and closed the connection: nobody is listening.
        with contextlib.suppress(OSError):
            send(handler, *answer, request_id=f"req_{next(self._ids)}")

    def _answer(self, request: RecordedRequest, params: dict[str, str]) -> Answer:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return api_error(401, "Incorrect API key provided.", code="invalid_api_key")
        if request.route == "unknown":
            return api_error(404, f"Unknown route {request.method} {request.path}.", code="unknown_url")
        handler = getattr(self, "_" + request.route.replace(".", "_"))
        with self._lock:
            answer: Answer = handler(request, params.get("id", ""))
        return answer

    # --- files -------------------------------------------------------------------------------

    def _files_create(self, request: RecordedRequest, _: str) -> Answer:
        upload = request.body.get("file") if isinstance(request.body, dict) else None
        purpose = request.body.get("purpose") if isinstance(request.body, dict) else None
        if not isinstance(upload, dict) or not purpose:
            return api_error(400, "A file and a purpose are required.", param="file")
        file_id = self._next_id("file")
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(upload["content"]),
            "created_at": int(time.time()),
            "filename": upload["filename"],
            "purpose": purpose,
            "status": "processed",
            "content": upload["content"],
        }
        return 200, public(self.files[file_id], hide=("content",))

    def _files_retrieve(self, request: RecordedRequest, file_id: str) -> Answer:
        if file_id not in self.files:
            return api_error(404, f"No such File object: {file_id}", param="id")
        return 200, public(self.files[file_id], hide=("content",))

    def _files_list(self, request: RecordedRequest, _: str) -> Answer:
        """Newest first unless ``order=asc``, filtered by ``purpose``; OpenAI's default limit is 10,000."""
        purpose = request.query.get("purpose")
        files = [public(f, hide=("content",)) for f in self.files.values() if purpose in (None, f["purpose"])]
        files.sort(key=lambda f: (f["created_at"], f["id"]), reverse=request.query.get("order") != "asc")
        return 200, page(files, request.query, default_limit=10_000)

    def _files_delete(self, request: RecordedRequest, file_id: str) -> Answer:
        if file_id not in self.files:
            return api_error(404, f"No such File object: {file_id}", param="id")
        self.deleted_files[file_id] = self.files.pop(file_id)
        return 200, {"id": file_id, "object": "file", "deleted": True}

    # --- fine-tuning jobs ----------------------------------------------------------------------

    def _jobs_create(self, request: RecordedRequest, _: str) -> Answer:
        body = request.body if isinstance(request.body, dict) else {}
        problem = self._job_problem(body)
        if problem is not None:
            return problem
        job_id = self._next_id("ftjob")
        method = body["method"]
        self.jobs[job_id] = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "model": body["model"],
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "suffix": body.get("suffix"),
            "metadata": body.get("metadata"),
            "method": method,
            "hyperparameters": method[method["type"]]["hyperparameters"],
            "status": "validating_files",
            "organization_id": "org-fake",
            "result_files": [],
            "seed": 42,
            "fine_tuned_model": None,
            "trained_tokens": None,
            "finished_at": None,
            "estimated_finish": None,
            "error": None,
            "events": [],
            "checkpoints": [],
        }
        self._event(self.jobs[job_id], f"Created fine-tuning job: {job_id}")
        return 200, self._job_object(job_id)

    def _job_problem(self, body: dict[str, Any]) -> Answer | None:
        """Check a create-job body as the API does; return the 400 answer or None."""
        for key in ("training_file", "validation_file"):
            file_id = body.get(key)
            if key == "training_file" or file_id is not None:
                known = self.files.get(file_id or "")
                if known is None or known["purpose"] != "fine-tune":
                    return api_error(400, f"{key} {file_id!r} is not a file uploaded for fine-tune.", param=key)
        if body.get("model") not in self.models:
            return api_error(400, f"Model {body.get('model')} is not available for fine-tuning.", param="model")
        method = body.get("method")
        method_type = method.get("type") if isinstance(method, dict) else None
        if method_type not in ("supervised", "dpo") or not isinstance(
            (method.get(method_type) or {}).get("hyperparameters") if isinstance(method, dict) else None, dict
        ):
            return api_error(400, "method must be supervised or dpo with hyperparameters.", param="method")
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or len(suffix) > 64):
            return api_error(400, "suffix must be a string of at most 64 characters.", param="suffix")
        metadata = body.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
        ):
            return api_error(400, "metadata must map strings to strings.", param="metadata")
        problem = dataset_problem(self.files[body["training_file"]]["content"], str(method_type))
        return api_error(400, problem, param="training_file", code="invalid_training_file") if problem else None

    def _jobs_list(self, request: RecordedRequest, _: str) -> Answer:
        """Newest first, filtered by ``metadata[key]=value`` pairs as OpenAI filters them."""
        wanted = metadata_filter(request.query).items()
        jobs = [
            self._job_object(job_id)
            for job_id, job in self.jobs.items()
            if all((job.get("metadata") or {}).get(key) == value for key, value in wanted)
        ]
        jobs.sort(key=lambda job: (job["created_at"], job["id"]), reverse=True)
        return 200, page(jobs, request.query)

    def _jobs_retrieve(self, request: RecordedRequest, job_id: str) -> Answer:
        """Return the job after moving it one step along validating → queued → running → end."""
        job = self.jobs.get(job_id)
        if job is None:
            return api_error(404, f"Job {job_id} not found.", param="fine_tuning_job_id")
        if job["status"] not in TERMINAL:
            self._advance(job)
        return 200, self._job_object(job_id)

    def _advance(self, job: dict[str, Any]) -> None:
        following = JOB_STEPS[job["status"]]
        if following == "succeeded" and self.job_failure is not None:
            job.update(status="failed", finished_at=int(time.time()))
            job["error"] = {"code": self.job_failure.code, "message": self.job_failure.message, "param": None}
            self._event(job, self.job_failure.message, level="error")
            return
        job["status"] = following
        self._event(job, f"Job {following.replace('_', ' ')}")
        if following == "running":
            job["estimated_finish"] = int(time.time()) + 600
        if following == "succeeded":
            self._succeed(job)

    def _succeed(self, job: dict[str, Any]) -> None:
        content = self.files[job["training_file"]]["content"]
        examples = len([line for line in content.splitlines() if line.strip()])
        epochs = job["hyperparameters"].get("n_epochs")
        epochs = epochs if isinstance(epochs, int) else 3
        model_id = f"ft:{job['model']}:fake-org:{job['suffix'] or ''}:{job['id'].split('-')[1]}"
        job.update(
            fine_tuned_model=model_id,
            trained_tokens=(len(content) // 4) * epochs,
            finished_at=int(time.time()),
            estimated_finish=None,
        )
        for epoch in range(1, epochs + 1):
            loss = round(1.2 / (epoch + 1), 4)
            job["checkpoints"].append(
                {
                    "id": self._next_id("ftckpt"),
                    "object": "fine_tuning.job.checkpoint",
                    "created_at": int(time.time()),
                    "fine_tuning_job_id": job["id"],
                    "fine_tuned_model_checkpoint": f"{model_id}:ckpt-step-{epoch * examples}",
                    "step_number": epoch * examples,
                    "metrics": {"step": float(epoch * examples), "train_loss": loss, "train_mean_token_accuracy": 0.9},
                }
            )
        self.add_model(model_id, owned_by="fake-org")
        self._event(job, f"New fine-tuned model created: {model_id}")

    def _jobs_cancel(self, request: RecordedRequest, job_id: str) -> Answer:
        job = self.jobs.get(job_id)
        if job is None:
            return api_error(404, f"Job {job_id} not found.", param="fine_tuning_job_id")
        if job["status"] in TERMINAL:
            return api_error(400, f"Job {job_id} has already {job['status']}.", code="invalid_state")
        job.update(status="cancelled", finished_at=int(time.time()), estimated_finish=None)
        self._event(job, "Job cancelled")
        return 200, self._job_object(job_id)

    def _jobs_events(self, request: RecordedRequest, job_id: str) -> Answer:
        if job_id not in self.jobs:
            return api_error(404, f"Job {job_id} not found.", param="fine_tuning_job_id")
        return 200, page(list(reversed(self.jobs[job_id]["events"])), request.query)

    def _jobs_checkpoints(self, request: RecordedRequest, job_id: str) -> Answer:
        if job_id not in self.jobs:
            return api_error(404, f"Job {job_id} not found.", param="fine_tuning_job_id")
        return 200, page(list(reversed(self.jobs[job_id]["checkpoints"])), request.query)

    def _job_object(self, job_id: str) -> dict[str, Any]:
        return public(self.jobs[job_id], hide=("events", "checkpoints", "suffix"))

    def _event(self, job: dict[str, Any], message: str, level: str = "info") -> None:
        job["events"].append(
            {
                "id": self._next_id("ftevent"),
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "type": "message",
            }
        )

    # --- models and completions ------------------------------------------------------------------

    def _models_retrieve(self, request: RecordedRequest, model_id: str) -> Answer:
        if model_id not in self.models:
            return api_error(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return 200, dict(self.models[model_id])

    def _chat_completions(self, request: RecordedRequest, _: str) -> Answer:
        body = request.body if isinstance(request.body, dict) else {}
        model = body.get("model")
        if model not in self.models:
            return api_error(404, f"The model `{model}` does not exist.", param="model", code="model_not_found")
        user = next((m["content"] for m in reversed(body.get("messages") or []) if m.get("role") == "user"), "")
        content = f"[{model}] Subject: Quick idea\n\nA reply to: {user}"
        return 200, {
            "id": self._next_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
        }
