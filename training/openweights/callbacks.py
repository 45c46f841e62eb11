"""The ``TrainerCallback`` that turns a Trainer's logs into the run's events and checkpoints.

Each logging step becomes one event; each saved epoch becomes one checkpoint row with the mean
training loss and token accuracy over the epoch's steps and, when there is a validation set, the
evaluation's loss and accuracy. Only the main process writes.

A resumed run replays the steps between its checkpoint and the moment its trainer died; the
callback reads what the run already recorded and writes each step's event and each checkpoint
once, so the files read as one run. Token counts continue from the checkpoint's.
"""

import time
from statistics import fmean
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from training.openweights.files import RunFiles, read_lines

METRIC_KEYS = ("loss", "mean_token_accuracy", "grad_norm", "learning_rate", "num_tokens", "epoch")


def rounded(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def event_kind(row: dict[str, Any]) -> str:
    """ "eval" for a validation event, "train" for a training-loss one."""
    metrics = row.get("metrics")
    return "eval" if isinstance(metrics, dict) and "eval_loss" in metrics else "train"


def recorded_steps(files: RunFiles) -> set[tuple[str, int]]:
    """The (kind, step) pairs the run's events and checkpoints already hold."""
    events = [row for row in read_lines(files.events) if isinstance(row.get("step"), int)]
    checkpoints = [row for row in read_lines(files.checkpoints) if isinstance(row.get("step"), int)]
    return {(event_kind(row), row["step"]) for row in events} | {("checkpoint", row["step"]) for row in checkpoints}


class ProgressCallback(TrainerCallback):
    """Writes loss events per logging step and checkpoint metrics per saved epoch."""

    def __init__(self, files: RunFiles, *, tokens_before: int = 0) -> None:
        self.files = files
        self.recorded = recorded_steps(files)
        self.tokens_before = tokens_before
        self.losses: list[float] = []
        self.accuracies: list[float] = []
        self.valid: dict[str, float | None] = {}
        self.trained_tokens: int | None = None
        self.loop_started: float | None = None
        self.loop_ended: float | None = None

    @property
    def loop_seconds(self) -> float | None:
        """Seconds from the first step's start to the last step's end (no setup, no teardown)."""
        if self.loop_started is None or self.loop_ended is None:
            return None
        return self.loop_ended - self.loop_started

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.loop_started is None:
            self.loop_started = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.loop_ended = time.perf_counter()

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Any = None, **kwargs: Any
    ) -> None:
        logs = logs or {}
        if not state.is_world_process_zero or "loss" not in logs:
            return
        self.losses.append(float(logs["loss"]))
        if isinstance(logs.get("mean_token_accuracy"), int | float):
            self.accuracies.append(float(logs["mean_token_accuracy"]))
        if isinstance(logs.get("num_tokens"), int | float):
            self.trained_tokens = self.tokens_before + int(logs["num_tokens"])
        metrics = {key: rounded(logs.get(key)) for key in METRIC_KEYS if key in logs}
        if "num_tokens" in metrics and self.trained_tokens is not None:
            metrics["num_tokens"] = float(self.trained_tokens)
        message = f"Step {state.global_step}/{state.max_steps}: training loss={float(logs['loss']):.4f}"
        self.record("train", state.global_step, message, metrics)

    def record(self, kind: str, step: int, message: str, metrics: dict[str, float | None]) -> None:
        """Write a step's event unless the run recorded it before it was resumed."""
        if (kind, step) not in self.recorded:
            self.recorded.add((kind, step))
            self.files.event(message, step=step, metrics=metrics)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics: Any = None, **kwargs: Any
    ) -> None:
        metrics = metrics or {}
        self.valid = {
            "valid_loss": rounded(metrics.get("eval_loss")),
            "valid_mean_token_accuracy": rounded(metrics.get("eval_mean_token_accuracy")),
        }
        if state.is_world_process_zero and self.valid["valid_loss"] is not None:
            message = f"Step {state.global_step}: validation loss={self.valid['valid_loss']:.4f}"
            self.record("eval", state.global_step, message, {"eval_loss": self.valid["valid_loss"]})

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.is_world_process_zero and ("checkpoint", state.global_step) not in self.recorded:
            self.recorded.add(("checkpoint", state.global_step))
            self.files.append(self.files.checkpoints, self.checkpoint_row(state))
        self.losses, self.accuracies, self.valid = [], [], {}

    def checkpoint_row(self, state: TrainerState) -> dict[str, Any]:
        """The saved epoch's metrics and where its resumable checkpoint lies."""
        return {
            "step": state.global_step,
            "epoch": rounded(state.epoch),
            "train_loss": fmean(self.losses) if self.losses else None,
            "train_mean_token_accuracy": fmean(self.accuracies) if self.accuracies else None,
            "valid_loss": None,
            "valid_mean_token_accuracy": None,
            **self.valid,
            "trained_tokens": self.trained_tokens,
            "path": str(self.files.trainer_output / f"checkpoint-{state.global_step}"),
        }
