"""Validation of fine-tuning JSONL files before anything is uploaded to a provider.

The checks follow OpenAI's fine-tuning cookbook and the per-line schemas of its API reference
(SFT and DPO), so a file that passes here is accepted on the first try. Errors are reported by
line (line 0 is the file as a whole); lines are parsed one at a time and only aggregates are
kept, so memory stays constant whatever the file size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from flywheel.errors import ApplicationError
from outcomes.training_text import RESERVED_MARK
from training.tokens import TokenTally

Method = Literal["sft", "dpo", "kto"]
Problem = tuple[str, str]

MIN_EXAMPLES = 10
MAX_STORED_ERRORS = 1_000
ERRORS_IN_MESSAGE = 20
FILE_LEVEL_LINE = 0

SFT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
DPO_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
DPO_INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
DPO_OUTPUT_KEYS = ("preferred_output", "non_preferred_output")
KTO_KEYS = frozenset({"prompt", "completion", "label"})
# tool_call_id belongs to every "tool" message, so allowing that role means allowing the key.
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call"})
ROLES = frozenset({"system", "user", "assistant", "tool", "function"})
# The special tokens of cl100k_base and o200k_base; OpenAI rejects examples whose text holds one.
SPECIAL_TOKENS = ("<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|endofprompt|>")


@dataclass(frozen=True)
class LineError:
    """One problem on one line (line 0 is the file as a whole)."""

    line: int
    code: str
    message: str


@dataclass
class ValidationReport:
    """Everything the validator found; ``ok`` is true when there are no errors.

    ``errors`` keeps the first 1,000 problems and ``error_count`` the true total; ``over_limit``
    likewise keeps the first 1,000 line numbers beside ``over_limit_count``. Token statistics
    cover the lines that are well formed.
    """

    ok: bool
    method: str
    model: str
    n_lines: int
    n_examples: int
    errors: list[LineError]
    error_count: int
    error_counts: dict[str, int]
    missing_system: int
    missing_user: int
    token_limit: int
    over_limit: list[int]
    over_limit_count: int
    total_tokens: int
    billed_tokens_per_epoch: int
    min_tokens: int
    max_tokens: int
    mean_tokens: float

    def as_dict(self) -> dict[str, Any]:
        """Plain values, ready for JSON or a TrainingRun's details."""
        return asdict(self)


class DatasetInvalid(ApplicationError):
    """A dataset failed validation; the message and details list the errors by line."""

    code = "dataset_invalid"


def validate_jsonl(path: str | Path, *, method: Method, model: str, allow_metadata: bool = False) -> ValidationReport:
    """Validate a JSONL file line by line (see :func:`validate_lines`)."""
    with Path(path).open("rb") as lines:
        return validate_lines(lines, method=method, model=model, allow_metadata=allow_metadata)


def validate_lines(
    lines: Iterable[bytes | str], *, method: Method, model: str, allow_metadata: bool = False
) -> ValidationReport:
    """Validate JSONL lines as ``method`` ("sft", "dpo" or "kto") training examples for ``model``.

    Streams: each line is parsed, checked, token-counted and dropped. Blank lines are errors,
    because every line of a training file must be one example.
    """
    if method not in CHECKS:
        raise ValueError(f"method must be 'sft', 'dpo' or 'kto', not {method!r}.")
    validator = Validator(method=method, model=model, allow_metadata=allow_metadata)
    for line_number, raw in enumerate(lines, start=1):
        validator.feed(line_number, raw)
    return validator.report()


def ensure_valid(report: ValidationReport) -> ValidationReport:
    """Return the report when it is ok; otherwise raise :class:`DatasetInvalid` listing the errors."""
    if report.ok:
        return report
    shown = "; ".join(_describe(error) for error in report.errors[:ERRORS_IN_MESSAGE])
    more = report.error_count - min(len(report.errors), ERRORS_IN_MESSAGE)
    suffix = f"; and {more} more" if more > 0 else ""
    raise DatasetInvalid(
        f"The dataset has {report.error_count} error(s): {shown}{suffix}.",
        details={
            "error_count": report.error_count,
            "error_counts": report.error_counts,
            "errors": [asdict(error) for error in report.errors],
        },
    )


def _describe(error: LineError) -> str:
    where = "file" if error.line == FILE_LEVEL_LINE else f"line {error.line}"
    return f"{where}: {error.message} [{error.code}]"


class Validator:
    """The running state of one validation: counters, the first errors and the token tally.

    :meth:`feed` checks a line of a file; :meth:`feed_example` checks an example as an export
    writes it, with its tokens already counted, so that a dataset is validated in the same pass
    that writes it instead of being read and parsed again.
    """

    def __init__(self, *, method: Method, model: str, allow_metadata: bool) -> None:
        self.method = method
        self.model = model
        self.check, keys = CHECKS[method]
        self.allowed_keys = (keys | {"metadata"}) if allow_metadata else keys
        self.tally = TokenTally(model)
        self.errors: list[LineError] = []
        self.error_counts: Counter[str] = Counter()
        self.n_lines = self.n_examples = self.missing_system = self.missing_user = 0

    def feed(self, line_number: int, raw: bytes | str) -> None:
        """Check one line; well-formed examples are also counted for tokens and warnings."""
        self.n_lines = line_number
        example = self._parse(line_number, raw)
        if example is None:
            return
        problems = self.check(example, self.allowed_keys)
        for code, message in problems:
            self.add_error(line_number, code, message)
        if not problems:
            self._measure(line_number, example)

    def feed_example(self, example: Mapping[str, Any], tokens: int) -> None:
        """Check the next line's example, already parsed, whose exact token count is ``tokens``."""
        self.n_lines += 1
        self.n_examples += 1
        problems = self.check(example, self.allowed_keys)
        for code, message in problems:
            self.add_error(self.n_lines, code, message)
        if not problems:
            self._measure(self.n_lines, example, tokens)

    def _parse(self, line_number: int, raw: bytes | str) -> dict[str, Any] | None:
        if not raw.strip():
            self.add_error(line_number, "invalid_json", "blank line; every line must hold one example")
            return None
        self.n_examples += 1
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.add_error(line_number, "invalid_json", f"not valid JSON ({exc})")
            return None
        if not isinstance(value, dict):
            self.add_error(line_number, "data_type", f"a JSON {type(value).__name__}, not an object")
            return None
        return value

    def _measure(self, line_number: int, example: Mapping[str, Any], tokens: int | None = None) -> None:
        roles = {message.get("role") for message in _prompt_messages(example)}
        self.missing_system += "system" not in roles
        self.missing_user += "user" not in roles
        if tokens is None:
            self._check_limit(line_number, self.tally.add(example, position=line_number))
        else:
            self._count(line_number, tokens)

    def feed_counted(self, counts: Sequence[int]) -> None:
        """Count the next lines: examples built well formed, with system and user messages, of ``counts`` tokens.

        The export's database path vouches for such lines' shape (known roles, clean non-blank
        texts), so only their tokens are left to check: in one step when none is over the limit.
        """
        if counts and max(counts) > self.tally.limit:
            for tokens in counts:
                self.n_lines += 1
                self.n_examples += 1
                self._count(self.n_lines, tokens)
            return
        self.n_lines += len(counts)
        self.n_examples += len(counts)
        self.tally.add_counts(counts)

    def _count(self, line_number: int, tokens: int) -> None:
        self.tally.add_count(tokens, position=line_number)
        self._check_limit(line_number, tokens)

    def _check_limit(self, line_number: int, tokens: int) -> None:
        if tokens > self.tally.limit:
            limit = self.tally.limit
            self.add_error(line_number, "over_token_limit", f"{tokens} tokens, over {self.model}'s {limit}")

    def add_error(self, line_number: int, code: str, message: str) -> None:
        self.error_counts[code] += 1
        if len(self.errors) < MAX_STORED_ERRORS:
            self.errors.append(LineError(line_number, code, message))

    def report(self) -> ValidationReport:
        """Apply the file-level checks and freeze the state into a report."""
        if self.n_examples < MIN_EXAMPLES:
            found = f"{self.n_examples} example(s); at least {MIN_EXAMPLES} are required"
            self.add_error(FILE_LEVEL_LINE, "too_few_examples", found)
        tally = self.tally
        error_count = sum(self.error_counts.values())
        return ValidationReport(
            ok=error_count == 0,
            method=self.method,
            model=self.model,
            n_lines=self.n_lines,
            n_examples=self.n_examples,
            errors=self.errors,
            error_count=error_count,
            error_counts=dict(self.error_counts),
            missing_system=self.missing_system,
            missing_user=self.missing_user,
            token_limit=tally.limit,
            over_limit=tally.over_limit,
            over_limit_count=tally.over_limit_count,
            total_tokens=tally.total_tokens,
            billed_tokens_per_epoch=tally.billed_tokens_per_epoch,
            min_tokens=tally.min_tokens,
            max_tokens=tally.max_tokens,
            mean_tokens=tally.mean_tokens,
        )


def _prompt_messages(example: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The messages that set up an example: SFT's ``messages``, DPO's ``input.messages``, KTO's ``prompt``."""
    if "input" in example:
        return list(example["input"]["messages"])
    if "prompt" in example:
        return list(example["prompt"])
    return list(example["messages"])


# --- Per-line checks: each returns a list of (code, message) problems ----------------------------


def _check_sft(example: Mapping[str, Any], allowed_keys: frozenset[str]) -> list[Problem]:
    problems = _check_top_level(example, allowed_keys)
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*problems, ("missing_messages_list", "`messages` must be a non-empty list")]
    problems += _check_messages(messages, "messages")
    if not any(isinstance(message, dict) and message.get("role") == "assistant" for message in messages):
        problems.append(("example_missing_assistant_message", "no message has the role `assistant`"))
    return problems


def _check_dpo(example: Mapping[str, Any], allowed_keys: frozenset[str]) -> list[Problem]:
    problems = _check_top_level(example, allowed_keys)
    problems += _check_dpo_input(example.get("input"))
    for key in DPO_OUTPUT_KEYS:
        problems += _check_dpo_output(example.get(key), key)
    if not problems and _output_content(example, "preferred_output") == _output_content(
        example, "non_preferred_output"
    ):
        problems.append(("identical_outputs", "`preferred_output` and `non_preferred_output` are the same text"))
    return problems


def _output_content(example: Mapping[str, Any], key: str) -> Any:
    """The content of a DPO output's one assistant message (called once the output is well formed)."""
    return example[key][0].get("content")


def _check_dpo_input(value: Any) -> list[Problem]:
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list) or not value["messages"]:
        return [("missing_messages_list", "`input.messages` must be a non-empty list")]
    problems = _unknown_keys(value, DPO_INPUT_KEYS, "unrecognized_key", "`input`")
    return problems + _check_messages(value["messages"], "input.messages")


def _check_dpo_output(value: Any, key: str) -> list[Problem]:
    if not isinstance(value, list) or len(value) != 1:
        return [("invalid_output", f"`{key}` must be a list holding exactly one assistant message")]
    problems = _check_message(value[0], f"{key}[0]")
    if isinstance(value[0], dict) and value[0].get("role") != "assistant":
        problems.append(("example_missing_assistant_message", f"`{key}[0]` is not an assistant message"))
    return problems


def _check_top_level(example: Mapping[str, Any], allowed_keys: frozenset[str]) -> list[Problem]:
    problems = _unknown_keys(example, allowed_keys, "unrecognized_key", "the example")
    if "metadata" in allowed_keys and "metadata" in example and not isinstance(example["metadata"], dict):
        problems.append(("invalid_metadata", "`metadata` must be an object"))
    return problems


def _unknown_keys(mapping: Mapping[str, Any], allowed: frozenset[str], code: str, where: str) -> list[Problem]:
    if mapping.keys() <= allowed:
        return []
    unknown = sorted(key for key in mapping if key not in allowed)
    if not unknown:
        return []
    hint = " (OpenAI's training format has no `metadata`)" if "metadata" in unknown else ""
    return [(code, f"{where} has unrecognized key(s) {', '.join(f'`{key}`' for key in unknown)}{hint}")]


def _check_messages(messages: list[Any], where: str) -> list[Problem]:
    problems: list[Problem] = []
    for index, message in enumerate(messages):
        problems += _check_message(message, f"{where}[{index}]")
    return problems


def _check_message(message: Any, where: str) -> list[Problem]:
    if _plain_text_message(message):
        return []
    if not isinstance(message, dict):
        return [("message_unrecognized_key", f"`{where}` is not an object")]
    problems = _unknown_keys(message, MESSAGE_KEYS, "message_unrecognized_key", f"`{where}`")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        problems.append(("unrecognized_role", f"`{where}` has role {role!r}"))
    return problems + _check_content(message, where)


def _plain_text_message(message: Any) -> bool:
    """The common case, settled at once: ``{"role", "content"}`` with a known role and clean, non-blank text.

    Every such message passes every check below; anything else takes the full checks.
    """
    if type(message) is not dict or len(message) != 2:
        return False
    role = message.get("role")
    if type(role) is not str or role not in ROLES:
        return False
    content = message.get("content")
    return type(content) is str and content != "" and not content.isspace() and RESERVED_MARK not in content


def _check_content(message: Mapping[str, Any], where: str) -> list[Problem]:
    content = message.get("content")
    calls_a_tool = message.get("tool_calls") or message.get("function_call")
    if content is None and message.get("role") == "assistant" and calls_a_tool:
        return []  # an assistant turn that only calls a tool legitimately has no text
    if not isinstance(content, str) or not content.strip():
        return [("missing_content", f"`{where}` has no text content")]
    if RESERVED_MARK in content:
        found = [token for token in SPECIAL_TOKENS if token in content]
        if found:
            return [("special_token", f"`{where}` contains the reserved token(s) {', '.join(found)}")]
    return []


def _check_kto(example: Mapping[str, Any], allowed_keys: frozenset[str]) -> list[Problem]:
    """A KTO row: a conversational ``prompt``, one assistant ``completion`` and a boolean ``label``."""
    problems = _check_top_level(example, allowed_keys)
    prompt = example.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        problems.append(("missing_messages_list", "`prompt` must be a non-empty list of messages"))
    else:
        problems += _check_messages(prompt, "prompt")
    problems += _check_dpo_output(example.get("completion"), "completion")
    if not isinstance(example.get("label"), bool):
        problems.append(("invalid_label", "`label` must be true (desirable) or false (undesirable)"))
    return problems


CHECKS: dict[str, tuple[Callable[[Mapping[str, Any], frozenset[str]], list[Problem]], frozenset[str]]] = {
    "sft": (_check_sft, SFT_KEYS),
    "dpo": (_check_dpo, DPO_KEYS),
    "kto": (_check_kto, KTO_KEYS),
}
