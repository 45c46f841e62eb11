"""What one training run is asked to do, read from the JSON file the provider writes.

Hyperparameters may be "auto"; :func:`resolve` turns them into numbers from the dataset size,
with OpenAI's rules for epochs and batch size so that a pool trains alike on either provider.
"""

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

METHODS = ("sft", "dpo", "kto")
AUTO = "auto"
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MAX_AUTO_EPOCHS = 25
MAX_AUTO_BATCH = 32
# LoRA learning rates: SFT moves the adapter far, preference methods nudge it from the reference.
LEARNING_RATES = {"sft": 2e-4, "dpo": 5e-5, "kto": 5e-5}


@dataclass(frozen=True)
class LoraSettings:
    """The adapter's shape: rank, scaling, dropout and which linear layers it wraps."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass(frozen=True)
class RunConfig:
    """One run: base model, method, data files, output directory and hyperparameters."""

    base_model: str
    method: str
    train_file: str
    output_dir: str
    valid_file: str | None = None
    n_epochs: int | str = AUTO
    batch_size: int | str = AUTO
    learning_rate: float | str = AUTO
    learning_rate_multiplier: float | str = AUTO
    max_length: int = 1024
    beta: float | str = AUTO
    seed: int = 42
    lora: LoraSettings = field(default_factory=LoraSettings)
    logging_steps: int = 1
    heartbeat_seconds: float = 10.0
    dtype: str = AUTO
    save_checkpoints: bool = True
    max_steps: int = -1
    resume_from_checkpoint: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}.")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Build a config from parsed JSON, ignoring keys it does not know (newer writers)."""
        known = {item.name for item in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        lora = values.get("lora")
        if isinstance(lora, Mapping):
            lora_known = {item.name for item in fields(LoraSettings)}
            values["lora"] = LoraSettings(**{k: v for k, v in lora.items() if k in lora_known})
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_mapping(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Resolved:
    """The numbers a run trains with once "auto" is settled."""

    n_epochs: int
    batch_size: int
    learning_rate: float
    beta: float


def resolve_epochs(n_examples: int, n_epochs: int | str) -> int:
    """The given epochs, or 3 raised so small datasets are seen 100 times, lowered for large ones."""
    if n_epochs != AUTO:
        return max(1, int(n_epochs))
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_AUTO_EPOCHS, math.ceil(MIN_TARGET_EXAMPLES / n_examples))
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(1, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def resolve_batch_size(n_examples: int, batch_size: int | str, method: str) -> int:
    """The given batch size, or about 0.2 % of the examples (1 to 32); KTO needs at least 2."""
    size = int(batch_size) if batch_size != AUTO else min(MAX_AUTO_BATCH, max(1, math.ceil(n_examples * 0.002)))
    return max(2, size) if method == "kto" else max(1, size)


def resolve_learning_rate(config: RunConfig) -> float:
    """The given rate, else the method's LoRA default times ``learning_rate_multiplier``."""
    if config.learning_rate != AUTO:
        return float(config.learning_rate)
    multiplier = 1.0 if config.learning_rate_multiplier == AUTO else float(config.learning_rate_multiplier)
    return LEARNING_RATES[config.method] * multiplier


def resolve(config: RunConfig, n_examples: int) -> Resolved:
    """Settle every "auto" of ``config`` for a dataset of ``n_examples``."""
    return Resolved(
        n_epochs=resolve_epochs(n_examples, config.n_epochs),
        batch_size=resolve_batch_size(n_examples, config.batch_size, config.method),
        learning_rate=resolve_learning_rate(config),
        beta=0.1 if config.beta == AUTO else float(config.beta),
    )
