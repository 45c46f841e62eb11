"""Training-data statistics (the seed's GET /training/stats) over known labels."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from outcomes.selectors import training_data_stats
from tests.factories import OrganizationFactory
from tests.outcomes.factories import OutcomeLabelFactory, reached

pytestmark = pytest.mark.django_db


def young() -> datetime.datetime:
    return timezone.now() - datetime.timedelta(days=settings.OUTCOME_MATURATION_DAYS - 1)


@pytest.fixture
def organization() -> Any:
    return OrganizationFactory()


def seed_known_labels(organization: Any) -> None:
    """Three positives, two negatives, four neutrals and one excluded label."""
    label = OutcomeLabelFactory
    label(organization=organization, deal_value=Decimal(60000), **reached("delivered opened replied deal_closed"))
    label(organization=organization, **reached("delivered opened replied meeting_booked meeting_completed"))
    label(organization=organization, reply_sentiment=0.9, **reached("delivered opened replied"))
    label(organization=organization, **reached("delivered"))  # negative: 0.1, sent 30 days ago
    label(organization=organization)  # negative: 0.0
    label(organization=organization, sent_at=young(), **reached("delivered"))  # neutral: its reply may come
    label(organization=organization, **reached("delivered opened clicked"))  # neutral: 0.35
    label(organization=organization, **reached("delivered opened replied meeting_booked bounced"))  # bounced
    label(organization=organization, reply_sentiment=-0.5, **reached("delivered opened replied"))  # neutral: 0.4
    label(organization=organization, excluded_from_training=True, **reached("delivered opened replied deal_closed"))


def test_statistics_count_each_class_on_known_data(organization: Any) -> None:
    seed_known_labels(organization)

    assert training_data_stats(organization_id=organization.pk) == {
        "total_examples": 9,
        "positive_examples": 3,
        "negative_examples": 2,
        "neutral_examples": 4,
        "deals_closed": 1,
        "meetings_booked": 2,
        "replies": 5,
    }


def test_statistics_come_from_one_query(organization: Any, django_assert_num_queries: Any) -> None:
    seed_known_labels(organization)

    with django_assert_num_queries(1):
        training_data_stats(organization_id=organization.pk)


def test_the_threshold_moves_examples_between_positive_and_neutral(organization: Any) -> None:
    seed_known_labels(organization)

    stats = training_data_stats(organization_id=organization.pk, min_quality_score=0.35)

    assert (stats["positive_examples"], stats["negative_examples"], stats["neutral_examples"]) == (5, 2, 2)


def test_a_threshold_below_the_negative_bound_keeps_classes_apart(organization: Any) -> None:
    OutcomeLabelFactory(organization=organization, **reached("delivered"))  # 0.1

    stats = training_data_stats(organization_id=organization.pk, min_quality_score=0.05)

    assert (stats["positive_examples"], stats["negative_examples"]) == (1, 0)


def test_statistics_count_a_duplicated_text_once_at_its_best(organization: Any) -> None:
    for stages in ("delivered", "delivered opened replied meeting_booked", "delivered opened"):
        OutcomeLabelFactory(organization=organization, body="One template.", **reached(stages))

    stats = training_data_stats(organization_id=organization.pk)

    assert (stats["total_examples"], stats["positive_examples"], stats["negative_examples"]) == (1, 1, 0)
    assert stats["meetings_booked"] == 1


def test_statistics_of_an_organization_leave_the_others_out_and_the_global_pool_has_all(organization: Any) -> None:
    OutcomeLabelFactory(organization=organization, **reached("delivered opened replied meeting_booked"))
    OutcomeLabelFactory(**reached("delivered opened replied meeting_booked"))

    assert training_data_stats(organization_id=organization.pk)["positive_examples"] == 1
    assert training_data_stats()["positive_examples"] == 2


def test_statistics_of_an_empty_pool_are_zeros(organization: Any) -> None:
    assert set(training_data_stats(organization_id=organization.pk).values()) == {0}
