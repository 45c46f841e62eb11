"""The training statistics collapse duplicates by the stored text hash and still count exactly as by the text."""

from typing import Any

import pytest
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber

from outcomes.models import TRAINING_TEXT, OutcomeLabel
from outcomes.selectors import matured_before, negative_q, positive_q, training_data_stats
from tests.factories import OrganizationFactory
from tests.outcomes.varied import build_varied_pool

pytestmark = pytest.mark.django_db


def stats_by_text(organization_id: Any, min_quality_score: float) -> dict[str, int]:
    """The statistics as they were computed before the hash: the window partitioned by the text itself."""
    best_first = [F("quality_score").desc(), F("sent_at").desc(), F("id").desc()]
    ranked = (
        OutcomeLabel.objects.for_pool(organization_id)
        .eligible_for_training()
        .order_by()
        .annotate(text_rank=Window(RowNumber(), partition_by=[TRAINING_TEXT], order_by=best_first))
    )
    counts = ranked.filter(Q(text_rank=1)).aggregate(
        total_examples=Count("id"),
        positive_examples=Count("id", filter=positive_q(min_quality_score)),
        negative_examples=Count("id", filter=negative_q(min_quality_score, matured_before())),
        deals_closed=Count("id", filter=Q(deal_closed_at__isnull=False)),
        meetings_booked=Count("id", filter=Q(meeting_booked_at__isnull=False) | Q(meeting_completed_at__isnull=False)),
        replies=Count("id", filter=Q(replied_at__isnull=False)),
    )
    neutral = counts["total_examples"] - counts["positive_examples"] - counts["negative_examples"]
    return {**counts, "neutral_examples": neutral}


@pytest.mark.parametrize("min_quality_score", [0.0, 0.15, 0.5, 0.6, 0.9])
def test_statistics_by_hash_equal_the_statistics_by_text_on_a_varied_pool(min_quality_score: float) -> None:
    first, second = OrganizationFactory.create(), OrganizationFactory.create()
    build_varied_pool(first, size=96, seed=3)
    build_varied_pool(second, size=48, seed=11)

    for organization_id in (first.pk, second.pk, None):
        expected = stats_by_text(organization_id, min_quality_score)
        assert training_data_stats(organization_id=organization_id, min_quality_score=min_quality_score) == expected
    assert stats_by_text(first.pk, min_quality_score)["total_examples"] < 96  # duplicates collapsed
