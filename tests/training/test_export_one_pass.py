"""The one-pass export writes what a second pass would read back: same bytes, same validation, same tokens."""

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.db import transaction

from outcomes.models import OutcomeLabel
from tests.factories import OrganizationFactory
from tests.outcomes.varied import build_varied_pool
from training.datasets import OutcomeDataFormatter, Selection
from training.tokens import count_example_tokens
from training.validation import validate_jsonl

pytestmark = pytest.mark.django_db

EXPORTS = [
    pytest.param({"method": "sft"}, id="sft"),
    pytest.param({"method": "sft", "outcome_conditioned": True, "validation_percent": 25}, id="sft-conditioned-split"),
    pytest.param({"method": "sft", "include_metadata": True, "min_quality_score": 0.3}, id="sft-metadata"),
    pytest.param({"method": "kto", "validation_percent": 10}, id="kto-split"),
    pytest.param({"method": "dpo"}, id="dpo"),
]


@pytest.fixture
def pool() -> Any:
    organization = OrganizationFactory.create()
    build_varied_pool(organization, size=200, seed=5)
    assert OutcomeLabel.objects.filter(training_tokens__isnull=True).exists()  # some counts are missing
    assert OutcomeLabel.objects.filter(training_tokens__isnull=False).exists()
    return organization


def serialized(formatter: OutcomeDataFormatter, organization: Any, options: dict[str, Any]) -> bytes:
    """The examples of the export, serialized one per line as the export writes them (split ignored)."""
    selection = Selection(
        organization.pk,
        options.get("min_quality_score", 0.6),
        True,
        options.get("outcome_conditioned", False),
        None,
    )
    with transaction.atomic():
        lines = formatter.lines(selection, options["method"], include_metadata=options.get("include_metadata", False))
        return b"".join(orjson.dumps(line[0], option=orjson.OPT_APPEND_NEWLINE) for line in lines)


@pytest.mark.parametrize(
    ("options", "model"),
    [
        *(pytest.param(export.values[0], "gpt-4o-mini", id=export.id) for export in EXPORTS),
        pytest.param(EXPORTS[1].values[0], "gpt-3.5-turbo-0125", id="sft-conditioned-split-cl100k"),
    ],
)
def test_the_report_equals_a_second_pass_over_the_written_file(
    pool: Any, tmp_path: Path, options: dict[str, Any], model: str
) -> None:
    allow_metadata = options.get("include_metadata", False)
    result = OutcomeDataFormatter(model=model).export_to_jsonl(
        tmp_path / "train.jsonl", organization_id=pool.pk, n_epochs="auto", **options
    )

    for path in filter(None, (result.path, result.validation_path)):
        reread = validate_jsonl(path, method=options["method"], model=model, allow_metadata=allow_metadata)
        written = result.report if path == result.path else reread
        assert dataclasses.asdict(written) == dataclasses.asdict(reread)
        examples = [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]
        assert reread.total_tokens == sum(count_example_tokens(example, model) for example in examples)
    assert result.count >= 10 and result.total_tokens > 0


@pytest.mark.parametrize("options", EXPORTS)
def test_the_files_hold_the_same_bytes_as_the_examples_serialized_one_by_one(
    pool: Any, tmp_path: Path, options: dict[str, Any]
) -> None:
    formatter = OutcomeDataFormatter()
    result = formatter.export_to_jsonl(tmp_path / "train.jsonl", organization_id=pool.pk, **options)
    written = Path(result.path).read_bytes()
    if result.validation_path:
        held_out = Path(result.validation_path).read_bytes()
        assert sorted((written + held_out).splitlines()) == sorted(serialized(formatter, pool, options).splitlines())
    elif result.content_digest != result.sha256:  # written in the table's order (PostgreSQL's database path)
        assert sorted(written.splitlines()) == sorted(serialized(formatter, pool, options).splitlines())
    else:
        assert written == serialized(formatter, pool, options)


def test_a_validation_file_is_validated_and_counted_on_its_own(pool: Any, tmp_path: Path) -> None:
    result = OutcomeDataFormatter().export_to_jsonl(
        tmp_path / "train.jsonl", organization_id=pool.pk, validation_percent=30
    )

    reread = validate_jsonl(result.validation_path, method="sft", model=OutcomeDataFormatter().model)
    assert result.validation_count == reread.n_examples > 0
