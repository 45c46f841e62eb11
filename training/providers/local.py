"""The ``local`` provider: the whole fine-tuning lifecycle offline, for development, demos and tests.

It is a retrieval model, not a language model. "Training" reads the dataset and keeps, for each
segment (industry, role, framework, tone, backing off to industry + role, industry, then the whole
pool) the highest-quality assistant texts; ``complete()`` answers a prompt with the best exemplar
of the prompt's segment. That is enough to run the loop end to end (register, test, route, A/B)
with no network, and the answers are real messages from the best outcomes. It reports only what it
measures (examples, segments, exemplars per segment, coverage of the validation prompts): no loss.

Files, jobs and models are JSON files under ``MEDIA_ROOT/local_provider/``, each written to a
temporary file and renamed, so a crash never leaves half a job behind. A file uploaded under a
name gets an id derived from it, so uploading it again replaces it rather than adding another. A job advances one state
per ``get_job`` call (the background poller's call), so nothing here sleeps or spawns threads.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import status

from training.providers.base import (
    SUFFIX_MAX_LENGTH,
    TERMINAL_STATUSES,
    Checkpoint,
    FileInfo,
    FineTuningProvider,
    JobEvent,
    JobInfo,
    ProviderError,
    build_method,
    string_metadata,
)
from training.tokens import count_example_tokens, resolve_epochs

SEGMENT_LEVELS: tuple[tuple[str, ...], ...] = (
    ("industry", "role", "framework", "tone"),
    ("industry", "role"),
    ("industry",),
    (),
)
SEGMENT_FIELD = re.compile(r"\b(industry|role|framework|tone)\s*=\s*([^,;\n]+)", re.IGNORECASE)
EXEMPLARS_PER_SEGMENT = 5
ESTIMATED_RUNNING_SECONDS = 60


class DatasetError(ValueError):
    """The training file is not a dataset the job's method can train on."""


def now() -> int:
    return int(timezone.now().timestamp())


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON to a temporary file beside ``path``, then rename it over ``path``.

    ``os.replace`` is atomic on one filesystem: a reader sees the old or the new job, never half.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        json.dump(data, tmp, ensure_ascii=False)
    os.replace(tmp.name, path)


def segment_of(prompt: str) -> dict[str, str]:
    """Parse "Industry=SaaS, Role=VP Sales, Framework=PAS, Tone=professional..." into a dict.

    Values are lowercased with whitespace and trailing dots trimmed; a prompt in any other form
    gives an empty dict, which matches only the whole pool.
    """
    found: dict[str, str] = {}
    for match in SEGMENT_FIELD.finditer(prompt):
        value = " ".join(match.group(2).strip().rstrip(".").split()).lower()
        if value:
            found.setdefault(match.group(1).lower(), value)
    return found


def segment_keys(segment: Mapping[str, str]) -> list[str]:
    """Return the segment's lookup keys from the finest to the whole pool ("*").

    A level is skipped when the segment lacks one of its fields, so a prompt without a role
    backs off straight to its industry.
    """
    keys = []
    for fields in SEGMENT_LEVELS:
        if all(segment.get(field) for field in fields):
            keys.append("|".join(f"{field}={segment[field]}" for field in fields) or "*")
    return keys


def check_example(example: Any, method_type: str) -> str | None:
    """Return what is wrong with one parsed line for the method, or None when it is usable."""
    if not isinstance(example, dict):
        return "is not a JSON object"
    if method_type == "dpo":
        if not isinstance(example.get("input"), dict) or not isinstance(example["input"].get("messages"), list):
            return "has no input.messages"
        for key in ("preferred_output", "non_preferred_output"):
            if not isinstance(example.get(key), list) or not example[key]:
                return f"has no {key}"
        return None
    if not isinstance(example.get("messages"), list):
        return "has no messages"
    if not any(isinstance(m, dict) and m.get("role") == "assistant" and m.get("content") for m in example["messages"]):
        return "has no assistant message"
    return None


def read_examples(path: Path, method_type: str) -> list[dict[str, Any]]:
    """Parse and check every line of a JSONL dataset, as a provider validates before training."""
    examples: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"Cannot read the training file: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"Invalid training file: line {number} is not valid JSON ({exc.msg}).") from exc
        problem = check_example(example, method_type)
        if problem:
            raise DatasetError(f"Invalid training file: line {number} {problem}.")
        examples.append(example)
    if not examples:
        raise DatasetError("Invalid training file: it holds no examples.")
    return examples


def last_content(messages: Any, role: str) -> str:
    """Return the content of the last message with the role, or an empty string."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == role and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


def exemplar_of(example: Mapping[str, Any]) -> tuple[str, str]:
    """Return (user prompt, assistant text) of an SFT example or of a DPO pair's preferred side."""
    if "messages" in example:
        return last_content(example["messages"], "user"), last_content(example["messages"], "assistant")
    preferred = example["preferred_output"]
    return last_content(example["input"]["messages"], "user"), last_content(preferred, "assistant")


def quality_of(example: Mapping[str, Any]) -> float | None:
    metadata = example.get("metadata")
    score = metadata.get("quality_score") if isinstance(metadata, dict) else None
    return float(score) if isinstance(score, int | float) else None


def build_segments(examples: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Return, for every segment key, its best assistant texts, best first.

    Best means highest ``metadata.quality_score``; examples without one rank after those with
    one, in file order (the exporter writes the best first).
    """
    ranked = sorted(
        enumerate(examples),
        key=lambda item: (quality_of(item[1]) is None, -(quality_of(item[1]) or 0.0), item[0]),
    )
    segments: dict[str, list[str]] = {}
    for _, example in ranked:
        prompt, text = exemplar_of(example)
        if not text:
            continue
        for key in segment_keys(segment_of(prompt)):
            texts = segments.setdefault(key, [])
            if len(texts) < EXEMPLARS_PER_SEGMENT and text not in texts:
                texts.append(text)
    return segments


def finest_segment(prompt: str) -> str:
    """The prompt's finest segment key ("*" for a prompt that names no segment)."""
    return segment_keys(segment_of(prompt))[0]


def model_metrics(segments: Mapping[str, list[str]], examples: list[dict[str, Any]]) -> dict[str, Any]:
    """What the exemplar model really holds: examples read, segments, exemplars per segment.

    A segment here is the finest one an example falls in; its exemplars are the texts kept for it
    (at most ``EXEMPLARS_PER_SEGMENT``). A retrieval model has no loss, so none is reported.
    """
    finest = {finest_segment(prompt) for prompt, text in map(exemplar_of, examples) if text}
    sizes = [len(segments.get(key, [])) for key in finest]
    return {
        "training_examples": len(examples),
        "segments": len(finest),
        "exemplars_per_segment_min": min(sizes, default=0),
        "exemplars_per_segment_mean": round(sum(sizes) / len(sizes), 2) if sizes else 0,
        "exemplars_per_segment_max": max(sizes, default=0),
    }


def validation_metrics(segments: Mapping[str, list[str]], validation: list[dict[str, Any]]) -> dict[str, Any]:
    """How well the model covers the validation file's prompts, measured on every one of them.

    ``validation_prompts_in_trained_segment`` counts the prompts whose own (finest) segment has
    exemplars; the others are answered from a coarser segment, backing off as ``complete()`` does.
    """
    prompts = [exemplar_of(example)[0] for example in validation]
    own = sum(1 for prompt in prompts if segments.get(finest_segment(prompt)))
    return {
        "validation_prompts": len(prompts),
        "validation_prompts_in_trained_segment": own,
        "validation_segment_coverage": round(own / len(prompts), 4) if prompts else None,
    }


def metrics_events(metrics: Mapping[str, Any]) -> list[str]:
    """The measured figures in words, for the job's events."""
    lines = [
        f"Exemplar model built from {metrics['training_examples']} examples: {metrics['segments']} segments, "
        f"{metrics['exemplars_per_segment_min']} to {metrics['exemplars_per_segment_max']} exemplars each "
        f"(mean {metrics['exemplars_per_segment_mean']}). A retrieval model has no training loss."
    ]
    if "validation_prompts" in metrics:
        lines.append(
            f"Validation: {metrics['validation_prompts_in_trained_segment']} of {metrics['validation_prompts']} "
            f"prompts fall in a segment seen in training (coverage {metrics['validation_segment_coverage']})."
        )
    return lines


def file_id_for(name: str) -> str:
    """The id of the file uploaded under ``name``: the same name always gives the same id."""
    return f"file-{hashlib.sha256(name.encode()).hexdigest()[:24]}"


def not_found(kind: str, identifier: str) -> ProviderError:
    return ProviderError(
        f"The local provider has no {kind} {identifier!r}.",
        code=f"{kind.replace(' ', '_')}_not_found",
        provider_status=404,
        status_code=status.HTTP_404_NOT_FOUND,
    )


class LocalProvider(FineTuningProvider):
    """Runs fine-tuning jobs offline and serves the exemplar models they produce."""

    name = "local"
    reports_loss = False
    poll_interval: float | None = 2.0  # a job takes about a second per poll: waiting a minute would be the whole cost

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else Path(settings.MEDIA_ROOT) / "local_provider"

    # --- storage -------------------------------------------------------------------------------

    def file_path(self, file_id: str) -> Path:
        return self.root / "files" / f"{Path(file_id).name}.jsonl"

    def job_path(self, job_id: str) -> Path:
        return self.root / "jobs" / f"{Path(job_id).name}.json"

    def model_path(self, model_id: str) -> Path:
        # Model ids hold colons; a digest gives a file name that is safe on every filesystem.
        return self.root / "models" / f"{hashlib.sha256(model_id.encode()).hexdigest()[:32]}.json"

    def load_job(self, job_id: str) -> dict[str, Any]:
        try:
            job: dict[str, Any] = json.loads(self.job_path(job_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise not_found("job", job_id) from None
        return job

    def save_job(self, job: Mapping[str, Any]) -> None:
        write_json_atomic(self.job_path(job["id"]), job)

    # --- the interface -------------------------------------------------------------------------

    def upload_training_file(self, path: str | Path, *, name: str | None = None) -> str:
        """Copy the file into the provider's store (atomically) and return its id."""
        file_id = file_id_for(name) if name else f"file-{uuid.uuid4().hex[:24]}"
        target = self.file_path(file_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        try:
            shutil.copyfile(path, partial)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ProviderError(f"Cannot read training file {path}: {exc}", code="file_unreadable") from exc
        os.replace(partial, target)
        return file_id

    def find_files(self, *, name: str) -> list[FileInfo]:
        path = self.file_path(file_id_for(name))
        if not path.exists():
            return []
        return [FileInfo(id=file_id_for(name), name=name, created_at=int(path.stat().st_mtime))]

    def delete_file(self, file_id: str) -> None:
        self.file_path(file_id).unlink(missing_ok=True)

    def find_jobs(self, *, run_id: str) -> list[JobInfo]:
        """Read every stored job and keep the run's, oldest first (to the nanosecond)."""
        found = []
        for path in (self.root / "jobs").glob("*.json"):
            try:
                job = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue  # removed or replaced while listing
            if job.get("metadata", {}).get("training_run_id") == run_id:
                found.append(job)
        found.sort(key=lambda job: (job.get("created_ns", 0), job["id"]))
        return [job_info(job) for job in found]

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
        """Record a job in "validating_files" and return its id; the file is checked on the next poll."""
        for file_id in filter(None, (training_file, validation_file)):
            if not self.file_path(file_id).exists():
                raise not_found("file", file_id)
        if suffix and len(suffix) > SUFFIX_MAX_LENGTH:
            raise ProviderError(
                f"suffix is longer than {SUFFIX_MAX_LENGTH} characters.", code="invalid_suffix", status_code=400
            )
        job_id = f"ftjob-{uuid.uuid4().hex[:24]}"
        job: dict[str, Any] = {
            "id": job_id,
            "status": "validating_files",
            "model": model,
            "training_file": training_file,
            "validation_file": validation_file,
            "suffix": suffix or "",
            "method": build_method(method, hyperparameters),
            "metadata": string_metadata(metadata),
            "created_at": now(),
            "created_ns": time.time_ns(),
            "events": [],
            "metrics": {},
        }
        add_event(job, f"Created fine-tuning job: {job_id}")
        add_event(job, f"Validating training file: {training_file}")
        self.save_job(job)
        return job_id

    def get_job(self, job_id: str) -> JobInfo:
        """Advance the job by one state (unless it has ended) and return it.

        Two pollers racing on one job at worst both take the same step and write the same
        state; the orchestrator's own status column decides what happens next.
        """
        job = self.load_job(job_id)
        if job["status"] not in TERMINAL_STATUSES:
            {"validating_files": self.validate, "queued": self.start, "running": self.finish}[job["status"]](job)
            self.save_job(job)
        return job_info(job)

    def list_events(self, job_id: str) -> list[JobEvent]:
        return [JobEvent(**event) for event in self.load_job(job_id)["events"]]

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        """None: a retrieval model has no loss, and a checkpoint without one would only pretend."""
        self.load_job(job_id)  # an unknown job is still a 404
        return []

    def job_metrics(self, job_id: str) -> dict[str, Any]:
        """What the job measured on its model: examples, segments, exemplars, validation coverage."""
        return dict(self.load_job(job_id).get("metrics", {}))

    def cancel_job(self, job_id: str) -> JobInfo:
        """Cancel a job that has not ended; an ended job is returned unchanged."""
        job = self.load_job(job_id)
        if job["status"] not in TERMINAL_STATUSES:
            job.update(status="cancelled", finished_at=now(), estimated_finish=None)
            add_event(job, "Fine-tuning job cancelled")
            self.save_job(job)
        return job_info(job)

    def complete(self, model_id: str, system_prompt: str, user_prompt: str) -> str:
        """Return the best exemplar for the prompt's segment, backing off to coarser segments."""
        try:
            model = json.loads(self.model_path(model_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise not_found("model", model_id) from None
        segments: dict[str, list[str]] = model["segments"]
        for key in segment_keys(segment_of(user_prompt)):
            if segments.get(key):
                return segments[key][0]
        return ""

    # --- the lifecycle, one step per poll --------------------------------------------------------

    def examples(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        return read_examples(self.file_path(job["training_file"]), job["method"]["type"])

    def validate(self, job: dict[str, Any]) -> None:
        """validating_files → queued, or failed with the first problem found in the file."""
        try:
            count = len(self.examples(job))
        except DatasetError as exc:
            fail(job, str(exc))
            return
        job["status"] = "queued"
        add_event(job, f"Training file validated: {count} examples. Job queued.")

    def start(self, job: dict[str, Any]) -> None:
        """queued → running."""
        job.update(status="running", estimated_finish=now() + ESTIMATED_RUNNING_SECONDS)
        add_event(job, "Fine-tuning job started")

    def finish(self, job: dict[str, Any]) -> None:
        """running → succeeded: build and store the exemplar model, record what it measured."""
        hyperparameters = job["method"][job["method"]["type"]]["hyperparameters"]
        try:
            examples = self.examples(job)
            validation = self.validation_examples(job)
            resolve_epochs(len(examples), hyperparameters.get("n_epochs", "auto"))  # refuse what OpenAI refuses
        except ValueError as exc:  # a DatasetError, or n_epochs out of range
            fail(job, str(exc))
            return
        model_id = f"ft:{job['model']}:local:{job['suffix']}:{job['id'].removeprefix('ftjob-')[:8]}"
        segments = self.save_model(model_id, job, examples)
        job["metrics"] = model_metrics(segments, examples)
        if validation is not None:
            job["metrics"].update(validation_metrics(segments, validation))
        for line in metrics_events(job["metrics"]):
            add_event(job, line)
        # The tokens of every example read, once: building the model reads the file once, whatever n_epochs says.
        tokens = sum(count_example_tokens(example, job["model"]) for example in examples)
        job.update(
            status="succeeded",
            fine_tuned_model=model_id,
            trained_tokens=tokens,
            finished_at=now(),
            estimated_finish=None,
        )
        add_event(job, f"New fine-tuned model created: {model_id}")
        add_event(job, "The job has successfully completed")

    def validation_examples(self, job: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The validation file's examples, or None when the job has none."""
        if not job.get("validation_file"):
            return None
        return read_examples(self.file_path(job["validation_file"]), job["method"]["type"])

    def save_model(self, model_id: str, job: Mapping[str, Any], examples: list[dict[str, Any]]) -> dict[str, list[str]]:
        """Store the exemplar model; return its segments."""
        segments = build_segments(examples)
        model = {
            "id": model_id,
            "kind": "exemplar-retrieval",
            "job_id": job["id"],
            "base_model": job["model"],
            "created_at": now(),
            "examples": len(examples),
            "segments": segments,
        }
        write_json_atomic(self.model_path(model_id), model)
        return segments


def add_event(job: dict[str, Any], message: str, level: str = "info") -> None:
    job["events"].append({"created_at": now(), "level": level, "message": message})


def fail(job: dict[str, Any], error: str) -> None:
    job.update(status="failed", error=error, finished_at=now(), estimated_finish=None)
    add_event(job, error, level="error")


def job_info(job: Mapping[str, Any]) -> JobInfo:
    return JobInfo(
        id=job["id"],
        status=job["status"],
        model=job["model"],
        fine_tuned_model=job.get("fine_tuned_model"),
        trained_tokens=job.get("trained_tokens"),
        error=job.get("error"),
        estimated_finish=job.get("estimated_finish"),
        finished_at=job.get("finished_at"),
        created_at=job.get("created_at"),
    )
