"""The quality score of an outcome label, exactly per the specification's rubric.

delivered +0.1, opened +0.1, clicked +0.15, replied +0.2, positive reply (sentiment > 0.5) +0.2,
meeting booked +0.3, meeting completed +0.4, deal closed +0.5, deal value >= 50,000 +0.2,
ICP bonus ``icp_match_score x 0.1``; capped at 1.0. Weights come from ``settings.QUALITY_WEIGHTS``.

The database computes it from :func:`quality_score_expression` for single labels and
``recompute_quality_scores``; a batch of events, which already holds each label's new funnel in
memory, computes it with :func:`quality_score_of` and writes it in the same statement. Both read the
same weights, round the same way, and a test holds them equal.
"""

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db.models import Case, Expression, F, FloatField, Q, Value, When
from django.db.models.functions import Cast, Least, Round

from outcomes.models import STAGES

STAGE_WEIGHTS = ("delivered", "opened", "clicked", "replied", "meeting_booked", "meeting_completed", "deal_closed")


def _bonus(condition: Q, weight: float) -> Case:
    return Case(When(condition, then=Value(weight)), default=Value(0.0), output_field=FloatField())


def quality_score_expression() -> Expression:
    """An expression computing ``quality_score`` from a row's funnel, sentiment, value and ICP match."""
    weights = settings.QUALITY_WEIGHTS
    terms: list[Expression] = [
        _bonus(Q(**{f"{STAGES[stage]}__isnull": False}), weights[stage]) for stage in STAGE_WEIGHTS
    ]
    terms.append(
        _bonus(
            Q(replied_at__isnull=False, reply_sentiment__gt=settings.POSITIVE_REPLY_SENTIMENT),
            weights["positive_reply"],
        )
    )
    terms.append(
        _bonus(Q(deal_closed_at__isnull=False, deal_value__gte=settings.HIGH_VALUE_DEAL), weights["high_value_deal"])
    )
    terms.append(Cast(F("icp_match_score"), FloatField()) * Value(weights["icp_match"]))
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    # Rounded so that 0.1 + 0.2 + ... stores as the rubric's decimal figure, not 0.6000000000000001.
    return Least(Value(1.0), Round(total, 6), output_field=FloatField())


def quality_score_of(row: Mapping[str, Any]) -> float:
    """The score of one label from its column values (``replied_at``, ``deal_value``, ...) in memory.

    Mirrors :func:`quality_score_expression` term by term, in the same order, and rounds as the
    database does: half away from zero at the sixth decimal of the sum's 15 significant digits.
    """
    weights = settings.QUALITY_WEIGHTS
    total = 0.0
    for stage in STAGE_WEIGHTS:
        total += weights[stage] if row[STAGES[stage]] is not None else 0.0
    sentiment = row["reply_sentiment"]
    if row["replied_at"] is not None and sentiment is not None and sentiment > settings.POSITIVE_REPLY_SENTIMENT:
        total += weights["positive_reply"]
    value = row["deal_value"]
    if row["deal_closed_at"] is not None and value is not None and value >= settings.HIGH_VALUE_DEAL:
        total += weights["high_value_deal"]
    total += float(row["icp_match_score"]) * weights["icp_match"]
    rounded = Decimal(format(total, ".15g")).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    return min(1.0, float(rounded))
