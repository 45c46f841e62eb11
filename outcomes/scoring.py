"""The quality score of an outcome label, exactly per the specification's rubric.

delivered +0.1, opened +0.1, clicked +0.15, replied +0.2, positive reply (sentiment > 0.5) +0.2,
meeting booked +0.3, meeting completed +0.4, deal closed +0.5, deal value >= 50,000 +0.2,
ICP bonus ``icp_match_score x 0.1``; capped at 1.0. Weights come from ``settings.QUALITY_WEIGHTS``.

The score is computed by the database from one expression, so a single label, a bulk batch of
events and ``recompute_quality_scores`` can never disagree about the rubric.
"""

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
