"""The KTO export: positives desirable, matured negatives undesirable, under the SFT export's rules."""

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.factories import OrganizationFactory
from tests.outcomes.factories import OutcomeLabelFactory, reached
from tests.training.test_export import (
    LEAKS,
    days_ago,
    negative,
    positive,
    read_lines,
    seed_personal_data,
)
from training.datasets import OutcomeDataFormatter
from training.validation import validate_jsonl

pytestmark = pytest.mark.django_db


@pytest.fixture
def organization() -> Any:
    return OrganizationFactory()


def text_of(row: dict[str, Any]) -> str:
    return str(row["completion"][0]["content"]).split("\n\n")[1]


def test_positives_are_desirable_and_matured_negatives_undesirable(organization: Any) -> None:
    positive(organization=organization, body="Good.")
    negative(organization=organization, body="Matured.", sent_at=days_ago(settings.OUTCOME_MATURATION_DAYS + 1))
    negative(organization=organization, body="Too young.", sent_at=days_ago(settings.OUTCOME_MATURATION_DAYS - 1))
    OutcomeLabelFactory(organization=organization, body="So-so.", **reached("delivered opened clicked"))
    positive(organization=organization, body="Excluded.", excluded_from_training=True)

    rows = OutcomeDataFormatter().export_training_data(organization_id=organization.pk, method="kto")

    assert [(text_of(row), row["label"]) for row in rows] == [("Good.", True), ("Matured.", False)]


def test_a_kto_row_is_a_conversational_prompt_one_completion_and_a_label(organization: Any) -> None:
    positive(organization=organization, body="Good.", prompt="Write to the CTO of a fintech.")

    (row,) = OutcomeDataFormatter(system_prompt="Be brief.").export_training_data(
        organization_id=organization.pk, method="kto"
    )

    assert set(row) == {"prompt", "completion", "label"}
    assert row["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Write to the CTO of a fintech."},
    ]
    assert [message["role"] for message in row["completion"]] == ["assistant"]


def test_without_negative_examples_only_desirable_rows_are_written(organization: Any) -> None:
    positive(organization=organization, body="Good.")
    negative(organization=organization, body="Bad.")

    rows = OutcomeDataFormatter().export_training_data(
        organization_id=organization.pk, method="kto", include_negative_examples=False
    )

    assert [row["label"] for row in rows] == [True]


def test_the_outcome_never_reaches_a_kto_row(organization: Any) -> None:
    OutcomeLabelFactory(organization=organization, body="Won.", **reached("delivered opened replied deal_closed"))
    negative(organization=organization, body="Lost.")

    rows = OutcomeDataFormatter().export_training_data(
        organization_id=organization.pk, method="kto", outcome_conditioned=True
    )

    assert len(rows) == 2
    assert not any("outcome" in str(row["prompt"]).lower() or "deal" in text_of(row).lower() for row in rows)


def test_a_kto_file_is_scrubbed_validated_counted_and_split(organization: Any, tmp_path: Path) -> None:
    seed_personal_data(organization)

    result = OutcomeDataFormatter().export_to_jsonl(
        tmp_path / "kto.jsonl", organization_id=organization.pk, method="kto", validation_percent=20
    )

    text = Path(result.path).read_text().lower()
    assert [leak for leak in LEAKS if leak in text] == []
    assert (result.positive_examples, result.negative_examples) == (9, 8)
    assert result.count + result.validation_count == 21
    assert result.total_tokens > 0 and result.report.ok
    assert all(isinstance(row["label"], bool) for row in read_lines(result.path))
    assert validate_jsonl(result.path, method="kto", model="gpt-4o").ok


def test_the_validator_names_what_is_wrong_with_a_kto_row(tmp_path: Path) -> None:
    good = '{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Yo"}], '
    lines = [good + '"label": true}'] * 10 + [good + '"label": "yes"}', '{"prompt": [], "completion": [], "label": 1}']
    path = tmp_path / "kto.jsonl"
    path.write_text("\n".join(lines) + "\n")

    report = validate_jsonl(path, method="kto", model="gpt-4o")

    assert not report.ok
    assert [(error.line, error.code) for error in report.errors] == [
        (11, "invalid_label"),
        (12, "missing_messages_list"),
        (12, "invalid_output"),
        (12, "invalid_label"),
    ]
