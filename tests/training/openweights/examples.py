"""Small datasets in the exporter's formats (SFT messages, OpenAI DPO pairs, KTO rows)."""

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SYSTEM = "You write sales emails."
GOOD = "Subject: Quick question\n\nHi there, would a 15 minute call next week be useful?"
BAD = "Subject: Congrats on\n\nour customers saw replies double within a month."
INDUSTRIES = ("SaaS", "Fintech", "Retail", "Healthcare")


def prompt(index: int) -> list[dict[str, str]]:
    industry = INDUSTRIES[index % len(INDUSTRIES)]
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Write a message for: Industry={industry}, Role=CTO"},
    ]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def sft_lines(count: int = 16) -> list[dict[str, Any]]:
    return [{"messages": prompt(i) + assistant(GOOD)} for i in range(count)]


def dpo_lines(count: int = 16) -> list[dict[str, Any]]:
    return [
        {"input": {"messages": prompt(i)}, "preferred_output": assistant(GOOD), "non_preferred_output": assistant(BAD)}
        for i in range(count)
    ]


def kto_lines(count: int = 16) -> list[dict[str, Any]]:
    return [
        {"prompt": prompt(i), "completion": assistant(GOOD if i % 2 else BAD), "label": bool(i % 2)}
        for i in range(count)
    ]


def write_jsonl(path: Path, lines: Iterable[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path
