"""On PostgreSQL the database writes the examples' texts: the same bytes, counts and errors as the Python path."""

import dataclasses
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.db import connection, transaction

from outcomes.models import OutcomeLabel, TrainingText
from outcomes.services import OutcomeItem, outcome_upsert_bulk
from outcomes.stored_texts import outcome_texts_scrub
from tests.factories import OrganizationFactory
from tests.outcomes.factories import OutcomeLabelFactory, reached
from tests.outcomes.varied import build_varied_pool, reach
from training.datasets import OutcomeDataFormatter, Selection
from training.datasets.database_lines import database_query
from training.datasets.writer import WrittenDataset
from training.validation import DatasetInvalid

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the database path is PostgreSQL's"),
]

# Segment values that segment_request must normalize: separators, runs and kinds of whitespace.
SEGMENTS = ("SaaS", " Retail,  EU ", "Fin;tech=B2B", "Health\ncare", "Ed\u00a0Tech\u2028", "\u3000", "", "x\u2003 y")
SUBJECTS = ("", "A question", "\u2003 ", "Jane, an idea", 'Quote "this" \\ that')
EXPORTS = [
    pytest.param({"method": "sft"}, id="sft"),
    pytest.param({"method": "sft", "outcome_conditioned": True, "validation_percent": 25}, id="sft-conditioned-split"),
    pytest.param({"method": "kto", "validation_percent": 10}, id="kto-split"),
    pytest.param({"method": "sft", "limit": 12, "min_quality_score": 0.3}, id="sft-limit"),
]


def tricky_items(count: int, *, controls: bool = False) -> list[OutcomeItem]:
    """Items whose segments, subjects, prompts and bodies exercise every rule of the texts.

    With ``controls``, some bodies hold control characters that COPY and JSON escape differently.
    """
    items = []
    for n in range(count):
        items.append(
            OutcomeItem(
                external_id=f"tricky-{n}",
                industry=SEGMENTS[n % len(SEGMENTS)],
                role=SEGMENTS[(n * 3) % len(SEGMENTS)],
                channel=SEGMENTS[(n * 5) % len(SEGMENTS)],
                first_name="Jane",
                last_name="Doe",
                company="Acme",
                prompt=["", "", "Follow up with Jane on the webinar.\tThanks"][n % 3],
                subject=SUBJECTS[n % len(SUBJECTS)],
                body=f'Hi Jane,\n\nA note about Acme\'s pipeline \u2014 caf\u00e9 \U0001f680 \\o/ "{n}".\r\nRef {n}.'
                + ("\x0b\x7f\x01 \\v" if controls and n % 7 == 0 else ""),
            )
        )
    return items


def tricky_pool(*, controls: bool) -> Any:
    organization = OrganizationFactory.create()
    build_varied_pool(organization, size=120, seed=11)
    results = outcome_upsert_bulk(organization=organization, items=tricky_items(60, controls=controls)).results
    reach([result.id for result in results], random.Random(3))
    return organization


@pytest.fixture
def pool() -> Any:
    return tricky_pool(controls=False)


def python_path(formatter: OutcomeDataFormatter, organization: Any, options: dict[str, Any]) -> bytes:
    """The examples as the formatter's Python path serializes them, one per line (split ignored)."""
    selection = Selection(
        organization.pk,
        options.get("min_quality_score", 0.6),
        True,
        options.get("outcome_conditioned", False),
        options.get("limit"),
    )
    with transaction.atomic():
        lines = formatter.lines(selection, options["method"])
        return b"".join(orjson.dumps(line[0], option=orjson.OPT_APPEND_NEWLINE) for line in lines)


@pytest.mark.parametrize("controls", [False, True], ids=["texts", "control-characters"])
@pytest.mark.parametrize("options", EXPORTS)
def test_the_database_path_writes_the_bytes_of_the_python_path(tmp_path: Path, options: dict, controls: bool) -> None:
    pool = tricky_pool(controls=controls)
    formatter = OutcomeDataFormatter()
    assert formatter.database_writes(options["method"], include_metadata=False)
    outcome_texts_scrub(organization_id=pool.pk)
    expected = python_path(formatter, pool, options)

    result = formatter.export_to_jsonl(tmp_path / "train.jsonl", organization_id=pool.pk, **options)

    written = Path(result.path).read_bytes()
    if result.validation_path:
        written += Path(result.validation_path).read_bytes()
    if options.get("limit"):
        assert written == expected  # a limit keeps the best: written best first, as the Python path writes them
    else:
        assert sorted(written.splitlines()) == sorted(expected.splitlines())  # the table's order
    assert result.count >= 10


def test_without_a_limit_the_examples_come_in_the_tables_order_and_a_limit_writes_the_best_first(
    pool: Any, tmp_path: Path
) -> None:
    outcome_texts_scrub(organization_id=pool.pk)
    formatter = OutcomeDataFormatter()
    whole = formatter.export_to_jsonl(tmp_path / "all.jsonl", organization_id=pool.pk)
    best = formatter.export_to_jsonl(tmp_path / "best.jsonl", organization_id=pool.pk, limit=whole.count)

    in_table_order, best_first = (Path(result.path).read_bytes().splitlines() for result in (whole, best))
    assert sorted(in_table_order) == sorted(best_first) and in_table_order != best_first
    assert best.content_digest == best.sha256 != whole.content_digest


def exported(organization: Any) -> OutcomeLabel:
    """A label whose example an SFT export writes: a positive, and the only label of its text."""
    marked = TrainingText.objects.filter(organization=organization, duplicated=True).values("training_text_hash")
    positives = OutcomeLabel.objects.filter(organization=organization, quality_score__gte=0.6, bounced_at=None)
    return positives.exclude(training_text_hash__in=marked).order_by("id")[0]


def moved() -> None:
    """Rewrite the table in another order (its ids'), every example unchanged, as CLUSTER does."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's own inserts are checked first
        cursor.execute("CLUSTER outcome_labels USING outcome_labels_pkey")


def test_the_digest_of_examples_in_the_tables_order_holds_when_their_rows_move(pool: Any, tmp_path: Path) -> None:
    outcome_texts_scrub(organization_id=pool.pk)
    formatter = OutcomeDataFormatter()
    before = formatter.export_to_jsonl(tmp_path / "before.jsonl", organization_id=pool.pk)
    again = formatter.export_to_jsonl(tmp_path / "again.jsonl", organization_id=pool.pk)
    moved()
    after = formatter.export_to_jsonl(tmp_path / "after.jsonl", organization_id=pool.pk)

    assert again.sha256 == before.sha256  # the same rows in the same places: the same bytes
    assert after.sha256 != before.sha256  # the rows moved, and the order with them
    assert after.content_digest == before.content_digest
    assert sorted(Path(after.path).read_bytes().splitlines()) == sorted(Path(before.path).read_bytes().splitlines())


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"ideal_body": "A better text for the reviewer."}, id="text"),
        pytest.param({"industry": "Logistics", "prompt": ""}, id="request"),
        pytest.param({"excluded_from_training": True}, id="excluded"),
    ],
)
def test_the_digest_changes_when_an_example_does(pool: Any, tmp_path: Path, change: dict[str, Any]) -> None:
    outcome_texts_scrub(organization_id=pool.pk)
    formatter = OutcomeDataFormatter()
    before = formatter.export_to_jsonl(tmp_path / "before.jsonl", organization_id=pool.pk)
    OutcomeLabel.objects.filter(pk=exported(pool).pk).update(**change)

    after = formatter.export_to_jsonl(tmp_path / "after.jsonl", organization_id=pool.pk)

    assert after.content_digest != before.content_digest


def test_rows_written_around_the_api_are_scrubbed_and_counted_in_place_first(tmp_path: Path) -> None:
    organization = OrganizationFactory.create()
    labels = [
        OutcomeLabelFactory.create(
            organization=organization,
            first_name="Jane",
            company="Acme",
            prompt="Write to Jane at Acme.",
            body=f"Hi Jane, Acme's pipeline, note {n}.",
            **reached("delivered opened replied meeting_booked"),
        )
        for n in range(12)
    ]

    result = OutcomeDataFormatter().export_to_jsonl(tmp_path / "train.jsonl", organization_id=organization.pk)

    stored = OutcomeLabel.objects.get(pk=labels[0].pk)
    assert stored.texts_ready and stored.training_tokens
    assert (stored.prompt, stored.body) == (
        "Write to {{first_name}} at {{company}}.",
        "Hi {{first_name}}, {{company}}'s pipeline, note 0.",
    )
    text = Path(result.path).read_text()
    assert result.count == 12 and "Jane" not in text and "Acme" not in text


def test_a_row_the_database_cannot_vouch_for_takes_the_python_path(tmp_path: Path) -> None:
    organization = OrganizationFactory.create()
    OutcomeLabelFactory.create_batch(
        11, organization=organization, **reached("delivered opened replied meeting_booked")
    )
    outcome_texts_scrub(organization_id=organization.pk)
    raw = OutcomeLabelFactory.create(
        organization=organization,
        first_name="Omar",
        body="Hi Omar, one more.",
        **reached("delivered opened replied meeting_booked"),
    )  # written during the export: neither scrubbed nor counted
    formatter = OutcomeDataFormatter()
    selection = Selection(organization.pk)
    training = formatter.writer(tmp_path / "train.jsonl", "sft", False)
    written = WrittenDataset("sft", training, None)
    lines = formatter.database_lines(written, "sft")

    with transaction.atomic():
        lines.copy(database_query(formatter.query(selection, "sft")).stream(None), None)
    result = written.finish(model=formatter.model)

    text = Path(result.path).read_text()
    assert result.count == 12 and "Hi {{first_name}}, one more." in text and "Omar" not in text
    assert not OutcomeLabel.objects.get(pk=raw.pk).texts_ready  # the Python path never writes


def test_an_invalid_row_is_reported_on_the_same_line_as_the_python_path_reports_it(pool: Any, tmp_path: Path) -> None:
    outcome_texts_scrub(organization_id=pool.pk)
    best = OutcomeLabel.objects.filter(organization=pool, quality_score__gte=0.6).order_by(
        "-quality_score", "-sent_at", "-id"
    )
    OutcomeLabel.objects.filter(pk=best[3].pk).update(body="Done <|endoftext|>", ideal_body="")
    OutcomeLabel.objects.filter(pk=best[5].pk).update(subject="", body="\u2003\n", ideal_body="")

    limit = 10_000  # both best first, so that the lines compare
    with pytest.raises(DatasetInvalid) as database:
        OutcomeDataFormatter().export_to_jsonl(tmp_path / "a.jsonl", organization_id=pool.pk, limit=limit)
    with pytest.raises(DatasetInvalid) as python:
        OutcomeDataFormatter().export_to_jsonl(
            tmp_path / "b.jsonl", organization_id=pool.pk, include_metadata=True, limit=limit
        )
    with pytest.raises(DatasetInvalid) as in_table_order:
        OutcomeDataFormatter().export_to_jsonl(tmp_path / "c.jsonl", organization_id=pool.pk)

    assert database.value.details["errors"] == python.value.details["errors"]
    assert {error["code"] for error in database.value.details["errors"]} == {"special_token", "missing_content"}
    codes = [error["code"] for error in in_table_order.value.details["errors"]]
    assert sorted(codes) == sorted(error["code"] for error in database.value.details["errors"])


def test_only_postgresql_sft_and_kto_exports_in_the_stored_encoding_take_the_database_path() -> None:
    formatter = OutcomeDataFormatter(model="gpt-4o-mini")
    assert formatter.database_writes("sft", include_metadata=False)
    assert formatter.database_writes("kto", include_metadata=False)
    assert not formatter.database_writes("dpo", include_metadata=False)
    assert not formatter.database_writes("sft", include_metadata=True)
    assert not OutcomeDataFormatter(model="gpt-3.5-turbo-0125").database_writes("sft", include_metadata=False)


def test_the_report_of_the_database_path_is_the_python_paths(pool: Any, tmp_path: Path) -> None:
    outcome_texts_scrub(organization_id=pool.pk)
    database = OutcomeDataFormatter().export_to_jsonl(tmp_path / "a.jsonl", organization_id=pool.pk)
    python = OutcomeDataFormatter().write_jsonl(tmp_path / "b.jsonl", Selection(pool.pk), "sft", include_metadata=True)
    report = python.training.validator.report()
    python.discard()  # metadata takes the Python path: its lines differ, its counts and report must not

    assert (database.positive_examples, database.negative_examples, database.deals_in_training) == (
        python.positive_examples,
        python.negative_examples,
        python.deals_in_training,
    )
    differs = {"errors", "error_counts", "error_count", "ok"}
    assert {key: value for key, value in dataclasses.asdict(database.report).items() if key not in differs} == {
        key: value for key, value in dataclasses.asdict(report).items() if key not in differs
    }
