"""The quality score of an outcome label, exactly per the specification's rubric.

delivered +0.1, opened +0.1, clicked +0.15, replied +0.2, positive reply (sentiment > 0.5) +0.2,
meeting booked +0.3, meeting completed +0.4, deal closed +0.5, deal value >= 50,000 +0.2,
ICP bonus ``icp_match_score x 0.1``; capped at 1.0. Weights come from ``settings.QUALITY_WEIGHTS``.

The rubric is one list, :data:`RUBRIC`, read three ways: the database computes the score from
:func:`quality_score_expression` for single labels and ``recompute_quality_scores``; a batch of
events, which already holds each label's new funnel in memory, computes it with
:func:`quality_score_of`; a label's admin page shows :func:`score_breakdown`, item by item, whose
total *is* :func:`quality_score_of`. All read the same weights and round the same way, and a test
holds the database and the memory equal.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db.models import Case, Expression, F, FloatField, Q, Value, When
from django.db.models.functions import Cast, Least, Round

from outcomes.models import STAGES

STAGE_WEIGHTS = ("delivered", "opened", "clicked", "replied", "meeting_booked", "meeting_completed", "deal_closed")
CAP = 1.0

Row = Mapping[str, Any]


@dataclass(frozen=True)
class RubricItem:
    """One line of the rubric: its weight's key in ``QUALITY_WEIGHTS``, when it applies, in SQL and in memory.

    A ``scaled_by`` item always adds its weight times that column (the ICP bonus); the others add
    their weight when they apply.
    """

    key: str
    label: Callable[[], str]
    condition: Callable[[], Q]
    applies: Callable[[Row], bool]
    scaled_by: str = ""

    def points(self, row: Row, weights: Mapping[str, float]) -> float:
        if self.scaled_by:
            return float(row[self.scaled_by]) * weights[self.key]
        return weights[self.key] if self.applies(row) else 0.0


def _stage(stage: str) -> RubricItem:
    column = STAGES[stage]
    return RubricItem(
        key=stage,
        label=lambda: stage.replace("_", " ").capitalize(),
        condition=lambda: Q(**{f"{column}__isnull": False}),
        applies=lambda row: row[column] is not None,
    )


def _positive_reply(row: Row) -> bool:
    sentiment = row["reply_sentiment"]
    return row["replied_at"] is not None and sentiment is not None and sentiment > settings.POSITIVE_REPLY_SENTIMENT


def _high_value_deal(row: Row) -> bool:
    value = row["deal_value"]
    return row["deal_closed_at"] is not None and value is not None and value >= settings.HIGH_VALUE_DEAL


# In the order the score sums them: the database and the memory add the same floats in the same order.
RUBRIC: tuple[RubricItem, ...] = (
    *(_stage(stage) for stage in STAGE_WEIGHTS),
    RubricItem(
        key="positive_reply",
        label=lambda: f"Positive reply (sentiment > {settings.POSITIVE_REPLY_SENTIMENT:g})",
        condition=lambda: Q(replied_at__isnull=False, reply_sentiment__gt=settings.POSITIVE_REPLY_SENTIMENT),
        applies=_positive_reply,
    ),
    RubricItem(
        key="high_value_deal",
        label=lambda: f"Deal value of at least {settings.HIGH_VALUE_DEAL:,}",
        condition=lambda: Q(deal_closed_at__isnull=False, deal_value__gte=settings.HIGH_VALUE_DEAL),
        applies=_high_value_deal,
    ),
    RubricItem(
        key="icp_match",
        label=lambda: "ICP match (match score x weight)",
        condition=lambda: Q(icp_match_score__gt=0),
        applies=lambda row: bool(row["icp_match_score"]),
        scaled_by="icp_match_score",
    ),
)


def _bonus(condition: Q, weight: float) -> Case:
    return Case(When(condition, then=Value(weight)), default=Value(0.0), output_field=FloatField())


def quality_score_expression() -> Expression:
    """An expression computing ``quality_score`` from a row's funnel, sentiment, value and ICP match."""
    weights = settings.QUALITY_WEIGHTS
    terms: list[Expression] = [
        Cast(F(item.scaled_by), FloatField()) * Value(weights[item.key])
        if item.scaled_by
        else _bonus(item.condition(), weights[item.key])
        for item in RUBRIC
    ]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    # Rounded so that 0.1 + 0.2 + ... stores as the rubric's decimal figure, not 0.6000000000000001.
    return Least(Value(CAP), Round(total, 6), output_field=FloatField())


@dataclass(frozen=True)
class ScoreLine:
    """One rubric item for one label: its description, weight, whether it applies and the points it adds."""

    key: str
    label: str
    weight: float
    applies: bool
    points: float


@dataclass(frozen=True)
class ScoreBreakdown:
    """A label's score item by item: the rounded sum, and the score (the sum capped at :data:`CAP`)."""

    lines: list[ScoreLine]
    sum: float
    total: float

    @property
    def capped(self) -> bool:
        return self.sum > self.total


def score_breakdown(row: Row) -> ScoreBreakdown:
    """The score of one label from its column values, item by item (what the label's admin page shows).

    Sums the items in the rubric's order and rounds as the database does: half away from zero at
    the sixth decimal of the sum's 15 significant digits; then caps.
    """
    weights = settings.QUALITY_WEIGHTS
    lines = []
    total = 0.0
    for item in RUBRIC:
        points = item.points(row, weights)
        total += points
        lines.append(ScoreLine(item.key, item.label(), weights[item.key], item.applies(row), points))
    rounded = _rounded(total)
    return ScoreBreakdown(lines=lines, sum=rounded, total=min(CAP, rounded))


def quality_score_of(row: Row) -> float:
    """The score of one label from its column values (``replied_at``, ``deal_value``, ...) in memory.

    The total of :func:`score_breakdown` (the same items, sums and rounding, without the lines: the
    events path scores every label of a batch), which mirrors :func:`quality_score_expression`.
    """
    weights = settings.QUALITY_WEIGHTS
    total = 0.0
    for item in RUBRIC:
        total += item.points(row, weights)
    return min(CAP, _rounded(total))


def _rounded(total: float) -> float:
    """``total`` rounded as the database rounds: half away from zero at the sixth decimal of its 15 digits."""
    return float(Decimal(format(total, ".15g")).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))
