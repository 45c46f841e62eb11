"""Training files are validated line by line before any upload, as OpenAI's checks would."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from training.tokens import count_example_tokens
from training.validation import (
    MAX_STORED_ERRORS,
    DatasetInvalid,
    LineError,
    ValidationReport,
    ensure_valid,
    validate_jsonl,
    validate_lines,
)

MODEL = "gpt-4o-2024-08-06"
SYSTEM = {"role": "system", "content": "You are an expert B2B sales copywriter."}
USER = {"role": "user", "content": "Write a message for: Industry=SaaS, Role=VP Sales, Framework=PAS"}
GOOD_REPLY = {"role": "assistant", "content": "Subject: Quick question\n\nHi {{first_name}}, worth a call?"}
WORSE_REPLY = {"role": "assistant", "content": "Subject: Buy now\n\nDear Sir, buy our product."}


def sft(**overrides: Any) -> dict[str, Any]:
    return {"messages": [SYSTEM, USER, GOOD_REPLY], **overrides}


def dpo(**overrides: Any) -> dict[str, Any]:
    example = {
        "input": {"messages": [SYSTEM, USER]},
        "preferred_output": [GOOD_REPLY],
        "non_preferred_output": [WORSE_REPLY],
    }
    return {**example, **overrides}


def jsonl(examples: list[Any]) -> list[bytes]:
    return [orjson.dumps(example) + b"\n" for example in examples]


def with_bad_line(good: list[bytes], bad: Any, *, at: int) -> list[bytes]:
    """Ten good lines with ``bad`` inserted so that it becomes line ``at``."""
    line = bad if isinstance(bad, bytes) else orjson.dumps(bad) + b"\n"
    return [*good[: at - 1], line, *good[at - 1 :]]


def codes_on(report: ValidationReport, line: int) -> set[str]:
    return {error.code for error in report.errors if error.line == line}


# --- Good files ----------------------------------------------------------------------------------


def test_a_good_sft_file_passes_with_its_token_statistics(tmp_path: Path) -> None:
    examples = [sft() for _ in range(9)] + [sft(messages=[SYSTEM, USER, {"role": "assistant", "content": "Hi."}])]
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"".join(jsonl(examples)))

    report = validate_jsonl(path, method="sft", model=MODEL)

    counts = [count_example_tokens(example, MODEL) for example in examples]
    assert report.ok, report.errors
    assert (report.n_lines, report.n_examples, report.error_count) == (10, 10, 0)
    assert (report.missing_system, report.missing_user) == (0, 0)
    assert report.total_tokens == report.billed_tokens_per_epoch == sum(counts)
    assert (report.min_tokens, report.max_tokens) == (min(counts), max(counts))
    assert report.mean_tokens == sum(counts) / 10
    assert report.token_limit == 65_536


def test_a_good_dpo_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"".join(jsonl([dpo() for _ in range(10)])))

    report = validate_jsonl(str(path), method="dpo", model=MODEL)

    assert report.ok, report.errors
    assert report.total_tokens == 10 * count_example_tokens(dpo(), MODEL)


def test_an_assistant_turn_that_only_calls_a_tool_needs_no_text() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    messages = [
        USER,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{}"},
        GOOD_REPLY,
    ]

    report = validate_lines(jsonl([sft(messages=messages) for _ in range(10)]), method="sft", model=MODEL)

    assert report.ok, report.errors


def test_it_accepts_str_lines_from_any_iterable() -> None:
    lines = (orjson.dumps(sft()).decode() for _ in range(10))

    assert validate_lines(lines, method="sft", model=MODEL).ok


def test_missing_system_and_user_messages_are_counted_as_warnings_only() -> None:
    examples = [sft()] * 8 + [sft(messages=[USER, GOOD_REPLY]), sft(messages=[SYSTEM, GOOD_REPLY])]

    report = validate_lines(jsonl(examples), method="sft", model=MODEL)

    assert report.ok
    assert (report.missing_system, report.missing_user) == (1, 1)


def test_metadata_is_refused_unless_allowed() -> None:
    lines = jsonl([sft(metadata={"outcome_id": "abc", "quality_score": 0.9}) for _ in range(10)])

    refused = validate_lines(lines, method="sft", model=MODEL)
    allowed = validate_lines(lines, method="sft", model=MODEL, allow_metadata=True)

    assert refused.error_counts == {"unrecognized_key": 10}
    assert "`metadata`" in refused.errors[0].message
    assert allowed.ok


# --- Bad lines -----------------------------------------------------------------------------------

SFT_BAD_LINES = [
    pytest.param(b"{not json\n", "invalid_json", id="not-json"),
    pytest.param(b"\n", "invalid_json", id="blank-line"),
    pytest.param([1, 2], "data_type", id="not-an-object"),
    pytest.param({"messages": []}, "missing_messages_list", id="empty-messages"),
    pytest.param({"prompt": "Hi", "completion": "Hello"}, "missing_messages_list", id="legacy-format"),
    pytest.param(sft(extra=1), "unrecognized_key", id="unknown-top-level-key"),
    pytest.param(sft(metadata={"outcome_id": "x"}), "unrecognized_key", id="metadata"),
    pytest.param(sft(messages=[USER, "Hello"]), "message_unrecognized_key", id="message-not-an-object"),
    pytest.param(sft(messages=[{**USER, "score": 1}, GOOD_REPLY]), "message_unrecognized_key", id="message-key"),
    pytest.param(sft(messages=[{"role": "bot", "content": "Hi"}, GOOD_REPLY]), "unrecognized_role", id="role"),
    pytest.param(sft(messages=[{"content": "Hi"}, GOOD_REPLY]), "unrecognized_role", id="no-role"),
    pytest.param(sft(messages=[{"role": "user", "content": ""}, GOOD_REPLY]), "missing_content", id="empty"),
    pytest.param(sft(messages=[{"role": "user", "content": "  "}, GOOD_REPLY]), "missing_content", id="blank"),
    pytest.param(sft(messages=[{"role": "user"}, GOOD_REPLY]), "missing_content", id="no-content"),
    pytest.param(sft(messages=[{"role": "user", "content": 42}, GOOD_REPLY]), "missing_content", id="number"),
    pytest.param(sft(messages=[SYSTEM, USER]), "example_missing_assistant_message", id="no-assistant"),
    pytest.param(
        sft(messages=[USER, {"role": "assistant", "content": "Done <|endoftext|>"}]), "special_token", id="token"
    ),
]


@pytest.mark.parametrize(("bad", "code"), SFT_BAD_LINES)
def test_it_rejects_a_bad_sft_line_with_its_line_number(bad: Any, code: str) -> None:
    lines = with_bad_line(jsonl([sft() for _ in range(10)]), bad, at=4)

    report = validate_lines(lines, method="sft", model=MODEL)

    assert not report.ok
    assert code in codes_on(report, 4)
    assert {error.line for error in report.errors} == {4}


DPO_BAD_LINES = [
    pytest.param(dpo(input={"messages": []}), "missing_messages_list", id="empty-input"),
    pytest.param(dpo(input=[SYSTEM, USER]), "missing_messages_list", id="input-not-an-object"),
    pytest.param(dpo(input={"messages": [USER], "seed": 1}), "unrecognized_key", id="input-key"),
    pytest.param(dpo(input={"messages": [{"role": "bot", "content": "x"}]}), "unrecognized_role", id="role"),
    pytest.param({"input": {"messages": [USER]}, "preferred_output": [GOOD_REPLY]}, "invalid_output", id="missing"),
    pytest.param(dpo(non_preferred_output=[WORSE_REPLY, GOOD_REPLY]), "invalid_output", id="two-outputs"),
    pytest.param(dpo(preferred_output=GOOD_REPLY), "invalid_output", id="output-not-a-list"),
    pytest.param(dpo(preferred_output=[USER]), "example_missing_assistant_message", id="output-from-user"),
    pytest.param(dpo(preferred_output=[{"role": "assistant", "content": ""}]), "missing_content", id="empty-output"),
    pytest.param(dpo(messages=[USER, GOOD_REPLY]), "unrecognized_key", id="sft-key-in-dpo"),
    pytest.param(dpo(chosen="x"), "unrecognized_key", id="unknown-key"),
    pytest.param(dpo(non_preferred_output=[GOOD_REPLY]), "identical_outputs", id="equal-outputs"),
]


@pytest.mark.parametrize(("bad", "code"), DPO_BAD_LINES)
def test_it_rejects_a_bad_dpo_line_with_its_line_number(bad: Any, code: str) -> None:
    lines = with_bad_line(jsonl([dpo() for _ in range(10)]), bad, at=7)

    report = validate_lines(lines, method="dpo", model=MODEL)

    assert not report.ok
    assert code in codes_on(report, 7)
    assert {error.line for error in report.errors} == {7}


def test_it_rejects_an_sft_file_given_as_dpo() -> None:
    report = validate_lines(jsonl([sft() for _ in range(10)]), method="dpo", model=MODEL)

    assert report.error_counts["missing_messages_list"] == 10


def test_it_rejects_a_file_with_fewer_than_10_examples() -> None:
    report = validate_lines(jsonl([sft() for _ in range(9)]), method="sft", model=MODEL)

    assert not report.ok
    assert report.errors == [LineError(0, "too_few_examples", "9 example(s); at least 10 are required")]


def test_it_rejects_examples_over_the_models_token_limit_by_line() -> None:
    long_reply = {"role": "assistant", "content": "hello " * 9_000}  # gpt-4-0613 allows 8,192 tokens
    lines = with_bad_line(jsonl([sft() for _ in range(10)]), sft(messages=[USER, long_reply]), at=3)

    report = validate_lines(lines, method="sft", model="gpt-4-0613")

    assert not report.ok
    assert codes_on(report, 3) == {"over_token_limit"}
    assert report.over_limit == [3]
    assert report.over_limit_count == 1


def test_it_keeps_the_first_thousand_errors_and_counts_them_all() -> None:
    def lines() -> Iterator[bytes]:
        yield from jsonl([sft() for _ in range(10)])
        for _ in range(MAX_STORED_ERRORS + 500):
            yield b"[]\n"

    report = validate_lines(lines(), method="sft", model=MODEL)

    assert len(report.errors) == MAX_STORED_ERRORS
    assert report.error_count == report.error_counts["data_type"] == MAX_STORED_ERRORS + 500


def test_it_refuses_an_unknown_method() -> None:
    with pytest.raises(ValueError, match="method"):
        validate_lines([], method="rft", model=MODEL)  # type: ignore[arg-type]


# --- Refusal -------------------------------------------------------------------------------------


def test_ensure_valid_returns_a_valid_report() -> None:
    report = validate_lines(jsonl([sft() for _ in range(10)]), method="sft", model=MODEL)

    assert ensure_valid(report) is report


def test_ensure_valid_refuses_an_invalid_dataset_listing_errors_by_line() -> None:
    lines = with_bad_line(jsonl([sft() for _ in range(10)]), sft(messages=[SYSTEM, USER]), at=2)
    report = validate_lines(lines, method="sft", model=MODEL)

    with pytest.raises(DatasetInvalid) as caught:
        ensure_valid(report)

    error = caught.value
    assert error.code == "dataset_invalid"
    assert "line 2: no message has the role `assistant` [example_missing_assistant_message]" in error.message
    assert error.details["errors"] == [
        {"line": 2, "code": "example_missing_assistant_message", "message": "no message has the role `assistant`"}
    ]


def test_the_report_serialises_to_plain_values() -> None:
    report = validate_lines(jsonl([sft() for _ in range(9)]), method="sft", model=MODEL)

    data = orjson.loads(orjson.dumps(report.as_dict()))

    assert data["ok"] is False
    assert data["errors"][0]["code"] == "too_few_examples"


def test_a_pair_whose_two_outputs_are_equal_is_an_error_that_blocks_the_file() -> None:
    pairs = [dpo() for _ in range(10)] + [dpo(non_preferred_output=[GOOD_REPLY])]

    report = validate_lines(jsonl(pairs), method="dpo", model=MODEL)

    assert not report.ok
    assert report.error_counts == {"identical_outputs": 1}
    with pytest.raises(DatasetInvalid, match="identical_outputs"):
        ensure_valid(report)
