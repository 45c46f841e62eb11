"""Dataset files as the exporter writes them, turned into the rows TRL's trainers read.

SFT lines are OpenAI's ``{"messages": [...]}``; DPO lines OpenAI's ``{"input": {"messages"},
"preferred_output", "non_preferred_output"}`` become ``prompt`` / ``chosen`` / ``rejected``; KTO
lines are already TRL's conversational ``prompt`` / ``completion`` / ``label``. Messages keep only
their role and content (OpenAI's per-message ``weight`` and the exporter's metadata stay out).
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A dataset line is not an example the run's method can train on."""


def messages_of(value: Any, what: str) -> list[dict[str, str]]:
    """Return a list of ``{"role", "content"}`` messages, or raise ``DataError``."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{what} is not a non-empty list of messages")
    cleaned = []
    for message in value:
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise DataError(f"{what} holds a message without text content")
        cleaned.append({"role": str(message.get("role", "")), "content": message["content"]})
    return cleaned


def sft_row(line: Mapping[str, Any]) -> dict[str, Any]:
    messages = messages_of(line.get("messages"), "messages")
    if not any(message["role"] == "assistant" for message in messages):
        raise DataError("messages hold no assistant message")
    return {"messages": messages}


def dpo_row(line: Mapping[str, Any]) -> dict[str, Any]:
    if "chosen" in line:
        return {key: messages_of(line.get(key), key) for key in ("prompt", "chosen", "rejected")}
    prompt = line.get("input")
    if not isinstance(prompt, Mapping):
        raise DataError("input is not an object with messages")
    return {
        "prompt": messages_of(prompt.get("messages"), "input.messages"),
        "chosen": messages_of(line.get("preferred_output"), "preferred_output"),
        "rejected": messages_of(line.get("non_preferred_output"), "non_preferred_output"),
    }


def kto_row(line: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(line.get("label"), bool):
        raise DataError("label is not true or false")
    return {
        "prompt": messages_of(line.get("prompt"), "prompt"),
        "completion": messages_of(line.get("completion"), "completion"),
        "label": line["label"],
    }


ROWS = {"sft": sft_row, "dpo": dpo_row, "kto": kto_row}


def read_rows(path: str | Path, method: str) -> list[dict[str, Any]]:
    """Parse every line of a JSONL dataset into the method's rows; say which line is wrong."""
    convert = ROWS[method]
    rows = []
    for number, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            if not isinstance(line, Mapping):
                raise DataError("is not a JSON object")
            rows.append(convert(line))
        except (json.JSONDecodeError, DataError) as exc:
            raise DataError(f"{Path(path).name} line {number}: {exc}") from exc
    if not rows:
        raise DataError(f"{Path(path).name} holds no examples")
    return rows


def kto_balance(rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """Return (desirable, undesirable) counts of KTO rows."""
    desirable = sum(1 for row in rows if row["label"])
    return desirable, len(rows) - desirable
