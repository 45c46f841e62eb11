"""The quality score follows the specification's rubric case by case."""

import itertools
import random
from decimal import Decimal

import pytest

from outcomes.models import STAGES, OutcomeLabel
from outcomes.scoring import quality_score_expression, quality_score_of
from tests.outcomes.factories import OutcomeLabelFactory, reached

pytestmark = pytest.mark.django_db


def score(**kwargs: object) -> float:
    return OutcomeLabelFactory.create(**kwargs).quality_score


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ("", 0.0),
        ("delivered", 0.1),
        ("delivered opened", 0.2),
        ("delivered opened clicked", 0.35),
        ("delivered opened replied", 0.4),
        ("delivered opened replied meeting_booked", 0.7),
        ("delivered opened replied meeting_booked meeting_completed", 1.0),
        ("meeting_completed", 0.4),
        ("deal_closed", 0.5),
    ],
)
def test_each_stage_adds_its_rubric_weight(stages: str, expected: float) -> None:
    assert score(**reached(stages)) == pytest.approx(expected)


def test_a_positive_reply_adds_its_bonus_only_above_the_sentiment_threshold() -> None:
    assert score(**reached("delivered opened replied"), reply_sentiment=0.8) == pytest.approx(0.6)
    assert score(**reached("delivered opened replied"), reply_sentiment=0.5) == pytest.approx(0.4)


def test_sentiment_without_a_reply_earns_nothing() -> None:
    assert score(reply_sentiment=0.9) == 0.0


def test_a_high_value_deal_adds_its_bonus_from_fifty_thousand() -> None:
    assert score(**reached("deal_closed"), deal_value=Decimal("50000")) == pytest.approx(0.7)
    assert score(**reached("deal_closed"), deal_value=Decimal("49999.99")) == pytest.approx(0.5)


def test_the_icp_bonus_is_the_match_score_times_a_tenth() -> None:
    assert score(icp_match_score=0.5) == pytest.approx(0.05)
    assert score(**reached("delivered"), icp_match_score=1.0) == pytest.approx(0.2)


def test_the_score_is_capped_at_one() -> None:
    everything = reached("delivered opened clicked replied meeting_booked meeting_completed deal_closed")
    assert score(**everything, reply_sentiment=1.0, deal_value=Decimal(80000), icp_match_score=1.0) == 1.0


def test_a_bounced_message_scores_only_its_icp_bonus() -> None:
    assert score(**reached("bounced")) == 0.0
    assert score(**reached("bounced"), icp_match_score=1.0) == pytest.approx(0.1)


def test_the_weights_come_from_settings(settings: object) -> None:
    label = OutcomeLabelFactory.create(**reached("delivered opened"))
    settings.QUALITY_WEIGHTS = {**settings.QUALITY_WEIGHTS, "opened": 0.3}  # type: ignore[attr-defined]
    OutcomeLabel.objects.filter(pk=label.pk).update(quality_score=quality_score_expression())
    label.refresh_from_db()
    assert label.quality_score == pytest.approx(0.4)


def test_the_in_memory_score_equals_the_databases_on_every_combination_of_the_rubric() -> None:
    rng = random.Random(7)
    stage_names = list(STAGES)
    for flags in itertools.product((False, True), repeat=len(stage_names)):
        stages = " ".join(name for name, on in zip(stage_names, flags, strict=True) if on)
        OutcomeLabelFactory.create(
            **reached(stages),
            reply_sentiment=rng.choice([None, 0.2, 0.5, 0.5000001, 0.9]),
            deal_value=rng.choice([None, Decimal("49999.99"), Decimal("50000.00"), Decimal("120000.50")]),
            icp_match_score=rng.choice([0.0, 0.1234565, 0.33333333, 0.5, 0.999999, 1.0]),
        )
    rows = OutcomeLabel.objects.values(
        *STAGES.values(), "reply_sentiment", "deal_value", "icp_match_score", "quality_score"
    )
    assert len(rows) == 2 ** len(stage_names)
    assert all(quality_score_of(row) == row["quality_score"] for row in rows)
