"""Exact, offline token counts and training-cost estimates for fine-tuning datasets.

Counts use the model's own BPE encoding through tiktoken, loaded offline by
:mod:`outcomes.encodings`. Per-example counts and billed tokens follow OpenAI's fine-tuning
cookbook; :class:`ExampleCounter` counts an export's examples from cached prompt counts and the
training-text counts stored on the labels, so a dataset is counted without re-encoding it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, Literal

import orjson
import tiktoken
from django.conf import settings

from outcomes.encodings import (
    DEFAULT_ENCODING,
    ENCODING_FILES,
    STORED_ENCODING,
    base_model,
    encoding_for,
    encoding_name_for,
    seed_tiktoken_cache,
)

__all__ = [
    "DEFAULT_ENCODING",
    "ENCODING_FILES",
    "STORED_ENCODING",
    "CostEstimate",
    "ExampleCounter",
    "TokenTally",
    "base_model",
    "count_example_tokens",
    "count_text_tokens",
    "encoding_for",
    "encoding_name_for",
    "estimate_cost",
    "price_per_million",
    "resolve_epochs",
    "seed_tiktoken_cache",
    "token_limit_for",
]

# Tokens per training example, by model family (longest matching prefix wins). Source: OpenAI's
# fine-tuning guide, "Token limits": examples longer than this are truncated by the provider.
TOKEN_LIMITS: dict[str, int] = {
    "gpt-4o-mini": 65_536,
    "gpt-4o": 65_536,
    "gpt-4.1": 65_536,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
}
DEFAULT_TOKEN_LIMIT = 65_536

TOKENS_PER_MESSAGE = 3
PROMPT_CACHE_SIZE = 4096  # distinct prompt messages whose counts an export keeps
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

# OpenAI's rule for n_epochs="auto" (fine-tuning data-preparation cookbook).
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25
MAX_EPOCHS = 50  # the API accepts 1..50 epochs when they are set by hand

DEFAULT_PRICE_MODEL = "gpt-4o"
DEFAULT_PRICE_PER_MILLION = Decimal("25.0")
COST_QUANTUM = Decimal("0.0001")  # TrainingRun.estimated_cost has four decimal places
MAX_RECORDED_POSITIONS = 1_000
_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")

Epochs = int | Literal["auto"]

# --- Counting ------------------------------------------------------------------------------------


def count_text_tokens(text: str, model: str) -> int:
    """Exact number of tokens in ``text`` for ``model``.

    Special-token strings such as ``<|endoftext|>`` are counted as ordinary text rather than
    raising; the validator rejects them separately because providers refuse them.
    """
    return len(encoding_for(model).encode_ordinary(text))


def count_example_tokens(example: Mapping[str, Any], model: str) -> int:
    """Tokens in one well-formed training example, counted the cookbook's way.

    SFT (``messages``): 3 per message + the tokens of each value + 1 per ``name`` + 3 to prime the
    reply. DPO (``input``/``preferred_output``/``non_preferred_output``): the input messages plus
    the longer of the two outputs, because each side is trained as prompt + that output and the
    longer pair is the one that must fit the limit (and bounds what is billed). KTO (``prompt``/
    ``completion``): the prompt's messages plus the completion's.
    """
    encoding = encoding_for(model)
    if "prompt" in example and "completion" in example:
        messages = [*(example.get("prompt") or []), *(example.get("completion") or [])]
        return _messages_tokens(messages, encoding) + REPLY_PRIMING_TOKENS
    if "input" in example:
        prompt = _messages_tokens(example["input"].get("messages") or [], encoding)
        outputs = (example.get("preferred_output") or [], example.get("non_preferred_output") or [])
        return prompt + max(_messages_tokens(output, encoding) for output in outputs) + REPLY_PRIMING_TOKENS
    return _messages_tokens(example.get("messages") or [], encoding) + REPLY_PRIMING_TOKENS


def _messages_tokens(messages: Iterable[Mapping[str, Any]], encoding: tiktoken.Encoding) -> int:
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "weight":
                continue  # a training switch (0 or 1), never shown to the model
            total += _value_tokens(value, encoding)
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def _value_tokens(value: Any, encoding: tiktoken.Encoding) -> int:
    """Tokens of a message value; structured values (tool calls, content parts) count as their JSON."""
    if isinstance(value, str):
        return len(encoding.encode_ordinary(value))
    if value is None:
        return 0
    return len(encoding.encode_ordinary(orjson.dumps(value).decode()))


class ExampleCounter:
    """Exact token counts of an export's examples, summed per message so nothing is encoded twice.

    The same numbers as :func:`count_example_tokens`. Prompt messages (one system prompt, a few
    distinct user requests) are counted once and cached, in a bounded cache so memory stays flat.
    A training text's count is the one stored on its label when it was written (in
    :data:`STORED_ENCODING`); the text is encoded only when that count is missing or the model
    uses another encoding.
    """

    def __init__(self, model: str) -> None:
        self.encoding = encoding_for(model)
        self.use_stored = encoding_name_for(model) == STORED_ENCODING
        self.message = lru_cache(maxsize=PROMPT_CACHE_SIZE)(self._message)

    def _message(self, role: str, content: str) -> int:
        """Tokens of one ``{"role", "content"}`` message: 3, the role's tokens, the content's."""
        return TOKENS_PER_MESSAGE + len(self.encoding.encode_ordinary(role)) + self.text(content)

    def text(self, content: str) -> int:
        return len(self.encoding.encode_ordinary(content))

    def completion(self, content: str, stored: int | None) -> int:
        """Tokens of the assistant message holding a label's training text (``stored``: its label's count)."""
        tokens = stored if self.use_stored and stored is not None else self.text(content)
        return self.message("assistant", "") + tokens


def token_limit_for(model: str) -> int:
    """The per-example token limit for the model's family (longest matching prefix)."""
    name = base_model(model)
    matches = [prefix for prefix in TOKEN_LIMITS if name.startswith(prefix)]
    return TOKEN_LIMITS[max(matches, key=len)] if matches else DEFAULT_TOKEN_LIMIT


# --- Cost ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostEstimate:
    """What a fine-tuning job on a dataset is expected to bill."""

    n_examples: int
    total_tokens: int
    billed_tokens_per_epoch: int
    n_epochs: int
    billed_tokens: int
    price_per_million: Decimal
    estimated_cost: Decimal

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON: Decimals become strings so no precision is lost."""
        data = asdict(self)
        data["price_per_million"] = str(self.price_per_million)
        data["estimated_cost"] = str(self.estimated_cost)
        return data


def resolve_epochs(n_examples: int, n_epochs: Epochs = TARGET_EPOCHS) -> int:
    """The number of epochs a job will run: the given number, or OpenAI's "auto" rule.

    "auto" trains 3 epochs, raised (up to 25) so that small datasets are seen at least 100 times
    and lowered (down to 1) so that large ones are seen at most 25,000 times. The cookbook rounds
    the raise down (100 // n); we round it up so that examples times epochs really reaches 100.
    """
    if n_epochs != "auto":
        if not MIN_DEFAULT_EPOCHS <= n_epochs <= MAX_EPOCHS:
            raise ValueError(f"n_epochs must be between 1 and {MAX_EPOCHS} or 'auto', not {n_epochs}.")
        return n_epochs
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, math.ceil(MIN_TARGET_EXAMPLES / n_examples))
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def price_per_million(model: str) -> Decimal:
    """USD per 1M trained tokens from ``settings.TRAINING_PRICES_PER_MILLION``.

    Looks up the exact model, then the same family with any date suffix dropped (so
    ``gpt-4o-mini`` finds ``gpt-4o-mini-2024-07-18``); ``ft:`` models are priced by their base.
    Unknown models get the gpt-4o price.
    """
    prices: Mapping[str, float] = getattr(settings, "TRAINING_PRICES_PER_MILLION", {})
    name = base_model(model)
    by_name = {key.lower(): value for key, value in prices.items()}
    if name in by_name:
        return Decimal(str(by_name[name]))
    family = _family(name)
    for key, value in by_name.items():
        if _family(key) == family:
            return Decimal(str(value))
    default = by_name.get(DEFAULT_PRICE_MODEL)
    return Decimal(str(default)) if default is not None else DEFAULT_PRICE_PER_MILLION


def _family(name: str) -> str:
    """A model name without its ``-YYYY-MM-DD`` snapshot suffix."""
    return _SNAPSHOT_SUFFIX.sub("", name)


def estimate_cost(example_token_counts: Iterable[int], *, model: str, n_epochs: Epochs = TARGET_EPOCHS) -> CostEstimate:
    """Estimate what training on examples of these token counts bills.

    Billed tokens = sum of min(limit, tokens), times epochs, because the provider truncates longer examples;
    epochs follow :func:`resolve_epochs`. The cost is rounded to 1/100 of a cent.
    """
    limit = token_limit_for(model)
    n_examples = total = billed = 0
    for tokens in example_token_counts:
        n_examples += 1
        total += tokens
        billed += min(limit, tokens)
    return _estimate(n_examples, total, billed, model=model, n_epochs=n_epochs)


def _estimate(n_examples: int, total: int, billed_per_epoch: int, *, model: str, n_epochs: Epochs) -> CostEstimate:
    epochs = resolve_epochs(n_examples, n_epochs)
    billed = billed_per_epoch * epochs
    price = price_per_million(model)
    cost = (Decimal(billed) * price / Decimal(1_000_000)).quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)
    return CostEstimate(
        n_examples=n_examples,
        total_tokens=total,
        billed_tokens_per_epoch=billed_per_epoch,
        n_epochs=epochs,
        billed_tokens=billed,
        price_per_million=price,
        estimated_cost=cost,
    )


class TokenTally:
    """Running token statistics for a dataset that is being streamed, in constant memory.

    ``add(example)`` counts one example and folds it into the totals; only aggregates are kept
    (plus the positions of the first 1,000 over-limit examples), never a list of every count, so
    an export of millions of rows stays flat in memory. ``estimate()`` prices the result.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.limit = token_limit_for(model)
        self.n_examples = 0
        self.total_tokens = 0
        self.billed_tokens_per_epoch = 0
        self.min_tokens = 0
        self.max_tokens = 0
        self.over_limit: list[int] = []
        self.over_limit_count = 0

    def add(self, example: Mapping[str, Any], *, position: int | None = None) -> int:
        """Count one example and return its tokens; ``position`` (e.g. a line number) names it."""
        return self.add_count(count_example_tokens(example, self.model), position=position)

    def add_counts(self, counts: Sequence[int]) -> None:
        """Fold already-counted examples that are all within the limit into the totals, in one step."""
        if not counts:
            return
        assert max(counts) <= self.limit, "examples over the limit are added one by one, for their positions"
        total = sum(counts)
        self.min_tokens = min(counts) if self.n_examples == 0 else min(self.min_tokens, min(counts))
        self.max_tokens = max(self.max_tokens, max(counts))
        self.n_examples += len(counts)
        self.total_tokens += total
        self.billed_tokens_per_epoch += total

    def add_count(self, tokens: int, *, position: int | None = None) -> int:
        """Fold an already-counted example into the totals and return its tokens."""
        self.n_examples += 1
        self.total_tokens += tokens
        self.billed_tokens_per_epoch += min(self.limit, tokens)
        self.min_tokens = tokens if self.n_examples == 1 else min(self.min_tokens, tokens)
        self.max_tokens = max(self.max_tokens, tokens)
        if tokens > self.limit:
            self.over_limit_count += 1
            if len(self.over_limit) < MAX_RECORDED_POSITIONS:
                self.over_limit.append(position if position is not None else self.n_examples)
        return tokens

    @property
    def mean_tokens(self) -> float:
        return self.total_tokens / self.n_examples if self.n_examples else 0.0

    def estimate(self, n_epochs: Epochs = TARGET_EPOCHS) -> CostEstimate:
        """The cost estimate for everything added so far."""
        return _estimate(
            self.n_examples, self.total_tokens, self.billed_tokens_per_epoch, model=self.model, n_epochs=n_epochs
        )
