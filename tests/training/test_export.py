"""Dataset export: SFT and DPO examples, eligibility, personal data, the split, cost and the command."""

import datetime
import hashlib
import io
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from outcomes.models import OutcomeLabel
from tests.factories import OrganizationFactory
from tests.outcomes.factories import OutcomeLabelFactory, reached
from training.datasets import DpoRow, Method, OutcomeDataFormatter, Selection, SftMetadata, SftRow, dataset_counts
from training.tokens import count_example_tokens
from training.validation import DatasetInvalid, validate_jsonl

pytestmark = pytest.mark.django_db

SEGMENT_REQUEST = (
    "Write a message for: Industry=SaaS, Role=VP Sales, Company size=51-200, Framework=PAS, "
    "Tone=professional, Channel=email"
)


def days_ago(days: float) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(days=days)


def positive(**fields: Any) -> OutcomeLabel:
    """A label that scored 0.7 (delivered, opened, replied, meeting booked)."""
    return OutcomeLabelFactory.create(**reached("delivered opened replied meeting_booked"), **fields)


def negative(**fields: Any) -> OutcomeLabel:
    """A label that scored 0.1 (delivered, nothing else), sent 30 days ago: a matured failure."""
    return OutcomeLabelFactory.create(**reached("delivered"), **fields)


def read_lines(path: str | Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]


def assistant_of(example: dict[str, Any]) -> str:
    return str(example["messages"][-1]["content"])


def user_of(example: dict[str, Any]) -> str:
    messages = example["input"]["messages"] if "input" in example else example["messages"]
    return str(messages[1]["content"])


def preferred_of(pair: dict[str, Any]) -> str:
    return str(pair["preferred_output"][0]["content"])


def rejected_of(pair: dict[str, Any]) -> str:
    return str(pair["non_preferred_output"][0]["content"])


@pytest.fixture
def organization() -> Any:
    return OrganizationFactory()


@pytest.fixture
def formatter() -> OutcomeDataFormatter:
    return OutcomeDataFormatter()


# --- Format and validity ---------------------------------------------------------------------------


def test_every_sft_example_of_factory_data_passes_the_validator(organization: Any, tmp_path: Path) -> None:
    for _ in range(12):
        positive(organization=organization)
    negative(organization=organization)
    OutcomeLabelFactory(organization=organization, **reached("delivered opened clicked"))

    result = OutcomeDataFormatter().export_to_jsonl(tmp_path / "sft.jsonl", organization_id=organization.pk)

    assert result.count == 12
    assert result.report.ok
    report = validate_jsonl(result.path, method="sft", model=settings.TRAINING_BASE_MODEL)
    assert report.ok, report.errors
    assert (report.n_examples, report.missing_system, report.missing_user) == (12, 0, 0)


def test_every_dpo_pair_of_factory_data_passes_the_validator(organization: Any, tmp_path: Path) -> None:
    for _ in range(4):
        positive(organization=organization)
    for _ in range(11):
        negative(organization=organization)

    result = OutcomeDataFormatter().export_to_jsonl(
        tmp_path / "dpo.jsonl", organization_id=organization.pk, method="dpo"
    )

    assert result.count == 11
    report = validate_jsonl(result.path, method="dpo", model=settings.TRAINING_BASE_MODEL)
    assert report.ok, report.errors
    assert report.n_examples == 11


def test_an_sft_example_has_the_system_user_and_assistant_messages_and_the_metadata(
    organization: Any, formatter: OutcomeDataFormatter
) -> None:
    label = positive(organization=organization, subject="Faster reviews", body="Hi {{first_name}}, one idea.")

    [example] = formatter.export_training_data(organization_id=organization.pk)

    assert example == {
        "messages": [
            {"role": "system", "content": settings.TRAINING_SYSTEM_PROMPT},
            {"role": "user", "content": SEGMENT_REQUEST},
            {"role": "assistant", "content": "Subject: Faster reviews\n\nHi {{first_name}}, one idea."},
        ],
        "metadata": {"outcome_id": str(label.pk), "quality_score": 0.7, "deal_value": None},
    }


def test_the_stored_prompt_is_the_user_message_when_there_is_one(
    organization: Any, formatter: OutcomeDataFormatter
) -> None:
    positive(organization=organization, prompt="Follow up on the webinar about forecasting.")

    [example] = formatter.export_training_data(organization_id=organization.pk)

    assert user_of(example) == "Follow up on the webinar about forecasting."


def test_empty_segment_attributes_are_left_out_of_the_user_message(
    organization: Any, formatter: OutcomeDataFormatter
) -> None:
    positive(organization=organization, company_size="", channel="", tone="casual, warm")

    [example] = formatter.export_training_data(organization_id=organization.pk)

    assert user_of(example) == "Write a message for: Industry=SaaS, Role=VP Sales, Framework=PAS, Tone=casual/ warm"


def test_the_reviewers_ideal_body_replaces_the_body(organization: Any, formatter: OutcomeDataFormatter) -> None:
    positive(organization=organization, subject="", body="First draft.", ideal_body="The better text.")

    [example] = formatter.export_training_data(organization_id=organization.pk)

    assert assistant_of(example) == "The better text."


def test_outcomes_never_appear_in_the_assistant_text(organization: Any, formatter: OutcomeDataFormatter) -> None:
    positive(
        organization=organization, subject="Hello", body="Hi.", deal_value=Decimal(15000), **reached("deal_closed")
    )

    [example] = formatter.export_training_data(organization_id=organization.pk)

    assert assistant_of(example) == "Subject: Hello\n\nHi."
    assert example["metadata"]["deal_value"] == 15000.0


def test_the_jsonl_file_leaves_the_metadata_out_unless_asked(organization: Any, tmp_path: Path) -> None:
    for _ in range(10):
        positive(organization=organization)
    formatter = OutcomeDataFormatter()

    plain = formatter.export_to_jsonl(tmp_path / "plain.jsonl", organization_id=organization.pk)
    with_metadata = formatter.export_to_jsonl(
        tmp_path / "local.jsonl", organization_id=organization.pk, include_metadata=True
    )

    assert all("metadata" not in line for line in read_lines(plain.path))
    assert all(line["metadata"]["quality_score"] == 0.7 for line in read_lines(with_metadata.path))


@pytest.mark.parametrize(
    ("method", "fields"), [("sft", (*SftRow._fields, *SftMetadata._fields)), ("dpo", DpoRow._fields)]
)
def test_each_query_selects_the_fields_of_its_row_type_by_name(
    organization: Any, method: Method, fields: tuple[str, ...]
) -> None:
    positive(organization=organization)
    negative(organization=organization)
    sql, params = OutcomeDataFormatter.query(Selection(organization.pk), method, include_metadata=True).stream(None)

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        assert len(cursor.fetchall()) == 1

    assert names == list(fields)


# --- Eligibility -----------------------------------------------------------------------------------


def test_excluded_labels_are_never_exported(organization: Any, formatter: OutcomeDataFormatter) -> None:
    positive(organization=organization, body="Kept.")
    positive(organization=organization, body="Excluded winner.", excluded_from_training=True)
    negative(organization=organization, body="Excluded loser.", excluded_from_training=True)

    sft = formatter.export_training_data(organization_id=organization.pk)
    dpo = formatter.export_training_data(organization_id=organization.pk, method="dpo")

    assert [assistant_of(example).split("\n\n")[1] for example in sft] == ["Kept."]
    assert dpo == []


def test_bounced_messages_are_never_positives(organization: Any, formatter: OutcomeDataFormatter) -> None:
    bounced = positive(organization=organization, body="Bounced.", **reached("bounced"))
    assert bounced.quality_score >= 0.6

    assert formatter.export_training_data(organization_id=organization.pk) == []


def test_plain_sft_leaves_the_negatives_and_the_neutrals_out(
    organization: Any, formatter: OutcomeDataFormatter
) -> None:
    positive(organization=organization, body="Good.")
    negative(organization=organization, body="Bad.")
    OutcomeLabelFactory(organization=organization, body="So-so.", **reached("delivered opened clicked"))

    examples = formatter.export_training_data(organization_id=organization.pk)

    assert [assistant_of(example).split("\n\n")[1] for example in examples] == ["Good."]


def test_messages_younger_than_the_maturation_window_are_never_negatives(
    organization: Any, formatter: OutcomeDataFormatter
) -> None:
    positive(organization=organization, body="Good.")
    negative(organization=organization, body="Matured.", sent_at=days_ago(settings.OUTCOME_MATURATION_DAYS + 1))
    negative(organization=organization, body="Too young.", sent_at=days_ago(settings.OUTCOME_MATURATION_DAYS - 1))

    pairs = formatter.export_training_data(organization_id=organization.pk, method="dpo")
    conditioned = formatter.export_training_data(organization_id=organization.pk, outcome_conditioned=True)

    assert [rejected_of(pair).split("\n\n")[1] for pair in pairs] == ["Matured."]
    assert sorted(assistant_of(example).split("\n\n")[1] for example in conditioned) == ["Good.", "Matured."]


def test_exact_duplicate_bodies_collapse_to_the_best_scoring_one(
    organization: Any, formatter: OutcomeDataFormatter
) -> None:
    template = "Hi {{first_name}}, the same template for everyone."
    positive(organization=organization, subject="Meeting", body=template)
    best = OutcomeLabelFactory.create(
        organization=organization, subject="Deal", body=template, **reached("delivered opened replied deal_closed")
    )
    negative(organization=organization, subject="Silence", body=template)
    positive(organization=organization, body="Another text.")

    examples = formatter.export_training_data(organization_id=organization.pk)
    pairs = formatter.export_training_data(organization_id=organization.pk, method="dpo")

    assert [example["metadata"]["outcome_id"] for example in examples if template in assistant_of(example)] == [
        str(best.pk)
    ]
    assert len(examples) == 2
    assert pairs == []  # the template's failure collapsed into its best outcome: no negative is left


def raw(kind: Any, organization: Any, name: str, **fields: Any) -> OutcomeLabel:
    """A label written straight to the table: the prospect's name still in its text."""
    body = f"Hi {name}, our forecasting add-on cut review time in half at teams like yours."
    return kind(organization=organization, first_name=name, last_name="", company="", body=body, **fields)


def test_raw_rows_that_differ_only_by_the_prospects_name_are_one_example(
    organization: Any, formatter: OutcomeDataFormatter
) -> None:
    best = raw(positive, organization, "Jane", icp_match_score=1.0)
    raw(positive, organization, "Bob")
    raw(positive, organization, "Ann")

    examples = formatter.export_training_data(organization_id=organization.pk)

    assert [example["metadata"]["outcome_id"] for example in examples] == [str(best.pk)]
    assert assistant_of(examples[0]).endswith(
        "Hi {{first_name}}, our forecasting add-on cut review time in half at teams like yours."
    )


def test_raw_rows_that_differ_only_by_the_prospects_name_never_form_a_pair(
    organization: Any, formatter: OutcomeDataFormatter, tmp_path: Path
) -> None:
    raw(positive, organization, "Jane")
    for name in ("Bob", "Ann", "Eve"):
        raw(negative, organization, name)

    pairs = formatter.export_training_data(organization_id=organization.pk, method="dpo")

    assert pairs == []  # the failures collapsed into the success once scrubbed: no negative is left


def test_raw_negatives_that_differ_only_by_name_are_one_pair_with_two_different_sides(
    organization: Any, formatter: OutcomeDataFormatter
) -> None:
    positive(organization=organization, body="The winner.")
    for name in ("Bob", "Ann", "Eve"):
        raw(negative, organization, name)

    pairs = formatter.export_training_data(organization_id=organization.pk, method="dpo")

    assert len(pairs) == 1
    assert [pair for pair in pairs if preferred_of(pair) == rejected_of(pair)] == []
    assert rejected_of(pairs[0]).endswith(
        "Hi {{first_name}}, our forecasting add-on cut review time in half at teams like yours."
    )


def test_a_pair_whose_two_sides_are_equal_once_scrubbed_is_never_written(formatter: OutcomeDataFormatter) -> None:
    texts = {"subject": "Idea", "body": "Hi Jane, one idea.", "ideal_body": "", "last_name": "", "company": ""}
    negative_side = {f"n_{key}": value for key, value in texts.items()}
    positive_side = {f"p_{key}": value for key, value in {**texts, "body": "Hi Bob, one idea."}.items()}
    segment = dict.fromkeys(("n_industry", "n_role", "n_company_size", "n_framework", "n_tone", "n_channel"), "")
    row = DpoRow(
        n_prompt="", **segment, **negative_side, n_first_name="Jane", level=0,
        **positive_side, p_first_name="Bob", p_deal=0, held_out=0,
        n_training_tokens=None, p_training_tokens=None,
    )  # fmt: skip
    changed = row._replace(p_body="Hi Bob, another idea.")

    assert formatter.dpo_line(row) is None
    assert formatter.dpo_line(changed) is not None


# --- DPO pairing -----------------------------------------------------------------------------------


def test_a_negative_is_paired_with_a_positive_of_its_own_segment(
    organization: Any, formatter: OutcomeDataFormatter
) -> None:
    positive(organization=organization, body="SaaS PAS winner.")
    positive(organization=organization, body="Fintech winner.", industry="Fintech")
    positive(organization=organization, body="SaaS AIDA winner.", framework="AIDA")
    negative(organization=organization, body="SaaS PAS loser.", prompt="Pitch the forecasting add-on.")

    [pair] = formatter.export_training_data(organization_id=organization.pk, method="dpo")

    assert preferred_of(pair).endswith("SaaS PAS winner.")
    assert rejected_of(pair).endswith("SaaS PAS loser.")
    assert user_of(pair) == "Pitch the forecasting add-on."  # an exact match keeps the negative's request
    assert pair["input"]["messages"][0] == {"role": "system", "content": settings.TRAINING_SYSTEM_PROMPT}


@pytest.mark.parametrize(
    ("negative_segment", "expected_winner", "expected_request"),
    [
        ({"tone": "casual"}, "Same industry and role.", "Write a message for: Industry=SaaS, Role=VP Sales"),
        ({"role": "CRO", "tone": "casual"}, "Same industry.", "Write a message for: Industry=SaaS"),
        ({"industry": "Retail", "role": "CRO"}, "Best anywhere.", "Write a message."),
    ],
)
def test_pairing_backs_off_to_industry_and_role_then_industry_then_any_positive(
    organization: Any,
    formatter: OutcomeDataFormatter,
    negative_segment: dict[str, str],
    expected_winner: str,
    expected_request: str,
) -> None:
    # Scores rise as segments get coarser, so the match cannot come from ranking alone.
    positive(organization=organization, body="Same industry and role.", framework="AIDA", icp_match_score=0.1)
    positive(organization=organization, body="Same industry.", role="Head of RevOps", icp_match_score=0.5)
    positive(organization=organization, body="Best anywhere.", industry="Healthcare", icp_match_score=1.0)
    negative(organization=organization, body="The loser.", prompt="A prompt of its own.", **negative_segment)

    [pair] = formatter.export_training_data(organization_id=organization.pk, method="dpo")

    assert preferred_of(pair).endswith(expected_winner)
    assert user_of(pair) == expected_request  # only the attributes both messages share


def test_pairing_reuses_the_best_positives_round_robin(organization: Any, formatter: OutcomeDataFormatter) -> None:
    positive(organization=organization, body="Best.", icp_match_score=1.0)
    positive(organization=organization, body="Second.")
    for day in range(5):
        negative(organization=organization, body=f"Loser {day}.", sent_at=days_ago(20 + day))

    pairs = formatter.export_training_data(organization_id=organization.pk, method="dpo")

    by_loser = {rejected_of(pair).split("\n\n")[1]: preferred_of(pair).split("\n\n")[1] for pair in pairs}
    assert by_loser == {
        "Loser 0.": "Best.",
        "Loser 1.": "Second.",
        "Loser 2.": "Best.",
        "Loser 3.": "Second.",
        "Loser 4.": "Best.",
    }


def test_there_are_no_pairs_without_a_positive(organization: Any, formatter: OutcomeDataFormatter) -> None:
    negative(organization=organization)

    assert formatter.export_training_data(organization_id=organization.pk, method="dpo") == []
    assert dataset_counts(organization.pk, 0.6)["dpo"] == 0


def test_outcome_conditioned_sft_states_the_outcome_in_the_user_message_only(
    organization: Any, formatter: OutcomeDataFormatter
) -> None:
    OutcomeLabelFactory(organization=organization, body="Closer.", **reached("delivered opened replied deal_closed"))
    negative(organization=organization, body="Ignored.")

    examples = formatter.export_training_data(organization_id=organization.pk, outcome_conditioned=True)

    requests = {assistant_of(example).split("\n\n")[1]: user_of(example) for example in examples}
    assert requests == {
        "Closer.": f"{SEGMENT_REQUEST}\n\nTarget outcome: deal closed",
        "Ignored.": f"{SEGMENT_REQUEST}\n\nTarget outcome: no reply",
    }
    assert not any("outcome" in assistant_of(example).lower() for example in examples)


# --- Personal data ---------------------------------------------------------------------------------


PROSPECT = {"first_name": "Jane", "last_name": "Doe", "company": "Acme Inc."}
PERSONAL_SUBJECT = "Jane, a quick idea for Acme"
PERSONAL_BODY = (
    "Hi Jane Doe,\n\nI saw Acme Inc. is hiring. Write to jane.doe@acme-mail.com or call +1 (415) 555-0199. "
    "Book a slot: https://trk.example.com/c/9f8e?u=jane or visit www.acme-inc.com today."
)
LEAKS = ("jane", "doe", "acme", "@", "415", "555", "0199", "http", "www.", "trk.")


def seed_personal_data(organization: Any) -> None:
    """Labels written straight to the table (as a factory or raw SQL would), bypassing the upsert's scrub."""
    for number in range(10):
        # Distinct bodies, or they would collapse into one example.
        positive(organization=organization, subject=PERSONAL_SUBJECT, body=f"{PERSONAL_BODY} (A{number})", **PROSPECT)
        negative(
            organization=organization,
            subject=PERSONAL_SUBJECT,
            body=f"{PERSONAL_BODY} (B{number})",
            prompt="Write to Jane Doe at Acme about jane.doe@acme-mail.com",
            **PROSPECT,
        )
    positive(organization=organization, prompt="Follow up with Jane at Acme: +1 415 555 0199", **PROSPECT)


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_no_personal_data_survives_an_export(organization: Any, tmp_path: Path, method: Method) -> None:
    seed_personal_data(organization)

    result = OutcomeDataFormatter().export_to_jsonl(
        tmp_path / f"{method}.jsonl", organization_id=organization.pk, method=method, include_metadata=False
    )

    text = Path(result.path).read_text().lower()
    assert result.count >= 10
    assert [leak for leak in LEAKS if leak in text] == []
    assert "{{first_name}}" in text and "{{email}}" in text and "{{phone}}" in text and "{{link}}" in text


def test_no_personal_data_survives_an_export_to_a_list(organization: Any, formatter: OutcomeDataFormatter) -> None:
    OutcomeLabelFactory.reset_sequence(0)  # the factory's texts carry its counter: keep it clear of "415"
    seed_personal_data(organization)

    examples = formatter.export_training_data(organization_id=organization.pk, outcome_conditioned=True)
    pairs = formatter.export_training_data(organization_id=organization.pk, method="dpo")

    messages = [example["messages"] for example in examples]  # not the metadata: a uuid may hold "415"
    text = orjson.dumps([messages, pairs]).decode().lower()
    assert [leak for leak in LEAKS if leak in text] == []


# --- Order, limit, split ---------------------------------------------------------------------------


def test_the_most_recent_examples_go_to_the_validation_file(organization: Any, tmp_path: Path) -> None:
    for day in range(1, 21):
        positive(organization=organization, subject=f"Day {day}", sent_at=days_ago(day))

    result = OutcomeDataFormatter().export_to_jsonl(
        tmp_path / "train.jsonl", organization_id=organization.pk, validation_percent=25
    )

    held_out = {assistant_of(line).split("\n\n")[0] for line in read_lines(result.validation_path)}
    trained = {assistant_of(line).split("\n\n")[0] for line in read_lines(result.path)}
    assert held_out == {f"Subject: Day {day}" for day in range(1, 6)}
    assert trained == {f"Subject: Day {day}" for day in range(6, 21)}
    assert (result.count, result.validation_count) == (15, 5)
    assert result.validation_path == str(tmp_path / "train.validation.jsonl")


def test_dpo_pairs_are_held_out_by_the_later_of_their_two_messages(organization: Any, tmp_path: Path) -> None:
    positive(organization=organization, body="Old winner.", sent_at=days_ago(100))
    for day in range(20, 40):
        negative(organization=organization, subject=f"Day {day}", sent_at=days_ago(day))
    positive(organization=organization, body="New winner.", industry="Fintech", sent_at=days_ago(1))
    negative(organization=organization, subject="Fintech loser", industry="Fintech", sent_at=days_ago(60))

    result = OutcomeDataFormatter().export_to_jsonl(
        tmp_path / "dpo.jsonl", organization_id=organization.pk, method="dpo", validation_percent=10
    )

    held_out = [rejected_of(pair).split("\n\n")[0] for pair in read_lines(result.validation_path)]
    assert held_out == ["Subject: Fintech loser", "Subject: Day 20"]  # paired with a day-old winner; newest
    assert result.count == 19


def test_the_limit_keeps_the_best_examples(organization: Any, formatter: OutcomeDataFormatter) -> None:
    positive(organization=organization, body="Good.")
    OutcomeLabelFactory(organization=organization, body="Best.", **reached("delivered opened replied deal_closed"))
    positive(organization=organization, body="Good too.")

    [example] = formatter.export_training_data(organization_id=organization.pk, limit=1)

    assert assistant_of(example).endswith("Best.")


def test_the_global_pool_spans_every_organization(organization: Any, formatter: OutcomeDataFormatter) -> None:
    positive(organization=organization, body="Ours.")
    positive(body="Theirs.")

    mine = formatter.export_training_data(organization_id=organization.pk)
    everyone = formatter.export_training_data(organization_id=None)

    assert [assistant_of(example).split("\n\n")[1] for example in mine] == ["Ours."]
    assert sorted(assistant_of(example).split("\n\n")[1] for example in everyone) == ["Ours.", "Theirs."]


# --- Result: hash, tokens, cost --------------------------------------------------------------------


def test_the_export_reports_its_sha256_token_totals_and_cost(organization: Any, tmp_path: Path) -> None:
    for _ in range(10):
        positive(organization=organization)
    OutcomeLabelFactory(organization=organization, deal_value=Decimal(60000), **reached("delivered deal_closed"))

    result = OutcomeDataFormatter().export_to_jsonl(tmp_path / "sft.jsonl", organization_id=organization.pk)

    data = Path(result.path).read_bytes()
    tokens = sum(count_example_tokens(line, settings.TRAINING_BASE_MODEL) for line in read_lines(result.path))
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.total_tokens == tokens
    assert result.billed_tokens == tokens * 3
    cost = Decimal(tokens * 3) * Decimal(25) / 1_000_000  # the seed's $25 per 1M tokens for gpt-4o
    assert result.estimated_cost == cost.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    assert (result.count, result.positive_examples, result.deals_in_training) == (11, 11, 1)


def test_an_invalid_dataset_is_refused_and_leaves_no_file_behind(organization: Any, tmp_path: Path) -> None:
    for _ in range(9):
        positive(organization=organization)

    with pytest.raises(DatasetInvalid, match="at least 10"):
        OutcomeDataFormatter().export_to_jsonl(tmp_path / "out" / "sft.jsonl", organization_id=organization.pk)

    assert list((tmp_path / "out").iterdir()) == []


def test_an_export_replaces_an_older_file_in_one_step(organization: Any, tmp_path: Path) -> None:
    target = tmp_path / "out" / "sft.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    for _ in range(10):
        positive(organization=organization)

    result = OutcomeDataFormatter().export_to_jsonl(target, organization_id=organization.pk)

    assert len(read_lines(target)) == result.count == 10
    assert sorted(path.name for path in target.parent.iterdir()) == ["sft.jsonl"]


def test_dataset_counts_say_how_many_examples_each_method_would_write(organization: Any) -> None:
    for _ in range(3):
        positive(organization=organization)
    for _ in range(2):
        negative(organization=organization)
    OutcomeLabelFactory(organization=organization, **reached("delivered opened clicked"))

    assert dataset_counts(organization.pk, 0.6) == {
        "total": 6,
        "positive": 3,
        "negative": 2,
        "neutral": 1,
        "sft": 3,
        "sft_outcome_conditioned": 5,
        "dpo": 2,
    }


# --- The command -----------------------------------------------------------------------------------


def test_the_command_exports_and_prints_the_count_tokens_cost_and_sha256(organization: Any, tmp_path: Path) -> None:
    for _ in range(10):
        positive(organization=organization)
    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "out.jsonl"

    call_command(
        "export_training_data", "--output", str(target), "--organization", organization.slug, stdout=out, stderr=err
    )

    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert f"Exported 10 example(s) to {target}" in out.getvalue()
    assert "Tokens: " in out.getvalue() and "Estimated cost: $0.0" in out.getvalue()
    assert f"sha256: {digest}" in out.getvalue()
    assert "10 of at most 10 examples (>= 100%)" in err.getvalue()


def test_the_command_writes_dpo_pairs_with_a_validation_file(organization: Any, tmp_path: Path) -> None:
    positive(organization=organization)
    for day in range(20, 40):
        negative(organization=organization, sent_at=days_ago(day))
    out = io.StringIO()

    call_command(
        "export_training_data",
        "--output",
        str(tmp_path / "dpo.jsonl"),
        "--organization",
        str(organization.pk),
        "--method",
        "dpo",
        "--validation-percent",
        "10",
        "--limit",
        "15",
        stdout=out,
        stderr=io.StringIO(),
    )

    assert "Exported 14 DPO pair(s)" in out.getvalue()
    assert "Validation file: 1 DPO pair(s)" in out.getvalue()
    assert len(read_lines(tmp_path / "dpo.validation.jsonl")) == 1


def test_the_command_reports_an_invalid_dataset_as_a_command_error(organization: Any, tmp_path: Path) -> None:
    positive(organization=organization)

    with pytest.raises(CommandError, match="at least 10 are required"):
        call_command("export_training_data", "--output", str(tmp_path / "x.jsonl"), stderr=io.StringIO())


def test_the_command_refuses_an_unknown_organization(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="No organization"):
        call_command("export_training_data", "--output", str(tmp_path / "x.jsonl"), "--organization", "nobody")
