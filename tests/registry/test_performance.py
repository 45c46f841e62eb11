"""model_performance_update, model_set_baseline and baseline_refresh."""

from decimal import Decimal

import pytest
from django.db import transaction

from flywheel.errors import ApplicationError, Conflict
from flywheel.models import Organization
from registry.models import RegisteredModel
from registry.services import Counts, baseline_refresh, model_counters_add, model_performance_update, model_set_baseline
from registry.services.performance import CounterOverflow, counter_ceiling
from tests.registry.factories import OrganizationFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db


def with_counters(
    organization: Organization | None, sent: int, replies: int, meetings: int, deals: int
) -> RegisteredModel:
    model = RegisteredModelFactory.create(organization=organization)
    return model_performance_update(
        model=model, messages_sent=sent, replies=replies, meetings_booked=meetings, deals_closed=deals
    )


def test_it_adds_the_deltas_and_the_rates_follow() -> None:
    model = RegisteredModelFactory.create()

    model_performance_update(
        model=model, messages_sent=100, replies=12, meetings_booked=5, deals_closed=2, revenue=30000.0
    )
    model_performance_update(
        model=model, messages_sent=100, replies=8, meetings_booked=1, deals_closed=0, revenue="50.25"
    )

    assert (model.total_messages_sent, model.total_replies, model.total_meetings_booked) == (200, 20, 6)
    assert (model.total_deals_closed, model.total_revenue) == (2, Decimal("30050.25"))
    assert (model.reply_rate, model.meeting_rate, model.close_rate) == pytest.approx((0.10, 0.03, 0.01))


@pytest.mark.parametrize(
    "deltas",
    [
        {"messages_sent": -1},
        {"replies": -3, "messages_sent": 5},
        {"revenue": -10},
        {"revenue": "lots"},
        {"revenue": float("inf")},
    ],
)
def test_it_refuses_negative_or_meaningless_deltas(deltas: dict) -> None:
    model = RegisteredModelFactory.create()

    with pytest.raises(ApplicationError):
        model_performance_update(model=model, **deltas)

    model.refresh_from_db()
    assert model.total_messages_sent == 0


def test_it_refuses_more_replies_than_messages_without_a_database_error() -> None:
    model = with_counters(None, 10, 2, 0, 0)

    with pytest.raises(ApplicationError, match="cannot outnumber the messages"):
        model_performance_update(model=model, messages_sent=1, replies=10)

    model.refresh_from_db()
    assert (model.total_messages_sent, model.total_replies) == (10, 2)


def test_replies_may_arrive_after_the_messages_they_answer() -> None:
    model = with_counters(None, 10, 0, 0, 0)

    model_performance_update(model=model, replies=4, meetings_booked=2, deals_closed=1)

    assert (model.total_replies, model.total_meetings_booked, model.total_deals_closed) == (4, 2, 1)


def test_comparisons_with_the_baseline_are_percentage_differences(organization: Organization) -> None:
    baseline = with_counters(organization, 100, 10, 4, 2)
    better = with_counters(organization, 100, 15, 2, 3)

    model_set_baseline(model=baseline)

    better.refresh_from_db()
    assert better.reply_rate_vs_baseline == pytest.approx(50.0)
    assert better.meeting_rate_vs_baseline == pytest.approx(-50.0)
    assert better.close_rate_vs_baseline == pytest.approx(50.0)
    assert (baseline.reply_rate_vs_baseline, baseline.close_rate_vs_baseline) == (0.0, 0.0)


def test_comparisons_are_null_without_a_baseline_or_data(organization: Organization) -> None:
    baseline = with_counters(organization, 100, 0, 4, 2)  # no replies: nothing to compare replies with
    quiet = RegisteredModelFactory.create(organization=organization)
    other = with_counters(organization, 100, 10, 2, 1)
    unrelated = with_counters(None, 100, 10, 2, 1)

    model_set_baseline(model=baseline)

    for model in (other, quiet, unrelated):
        model.refresh_from_db()
    assert other.reply_rate_vs_baseline is None
    assert other.meeting_rate_vs_baseline == pytest.approx(-50.0)
    assert (quiet.reply_rate_vs_baseline, quiet.meeting_rate_vs_baseline, quiet.close_rate_vs_baseline) == (None,) * 3
    assert unrelated.meeting_rate_vs_baseline is None


def test_a_counter_change_refreshes_the_comparisons(organization: Organization) -> None:
    baseline = with_counters(organization, 100, 10, 0, 0)
    model = with_counters(organization, 100, 10, 0, 0)
    model_set_baseline(model=baseline)

    model_performance_update(model=model, messages_sent=0, replies=10)
    assert model.reply_rate_vs_baseline == pytest.approx(100.0)

    model_performance_update(model=baseline, messages_sent=100)
    model.refresh_from_db()
    assert model.reply_rate_vs_baseline == pytest.approx(300.0)


def test_setting_a_new_baseline_replaces_the_old_one(organization: Organization) -> None:
    first = with_counters(organization, 100, 10, 0, 0)
    second = with_counters(organization, 100, 20, 0, 0)
    model_set_baseline(model=first)

    model_set_baseline(model=second)

    first.refresh_from_db()
    assert (first.is_baseline, second.is_baseline) == (False, True)
    assert first.reply_rate_vs_baseline == pytest.approx(-50.0)
    event = second.events.get(action="baseline_set")
    assert event.reason == f"replaces {first.model_version}"
    with pytest.raises(Conflict):
        model_set_baseline(model=second)


def test_the_refresh_writes_only_the_rows_whose_comparison_changes(organization: Organization) -> None:
    baseline = with_counters(organization, 100, 10, 0, 0)
    with_counters(organization, 100, 20, 0, 0)
    model_set_baseline(model=baseline)

    assert baseline_refresh(organization_id=organization.pk) == 0
    RegisteredModel.objects.filter(pk=baseline.pk).update(total_replies=20)
    assert baseline_refresh(organization_id=str(organization.pk)) == 1  # the other model; the baseline stays 0


def test_each_pool_has_its_own_baseline() -> None:
    acme, globex = OrganizationFactory.create(), OrganizationFactory.create()
    model_set_baseline(model=with_counters(acme, 10, 1, 0, 0))
    model_set_baseline(model=with_counters(globex, 10, 1, 0, 0))
    model_set_baseline(model=with_counters(None, 10, 1, 0, 0))

    assert RegisteredModel.objects.filter(is_baseline=True).count() == 3


# --- The counters' ceilings --------------------------------------------------------------------

# A million below the revenue column's ceiling (round enough for SQLite's floating point decimals).
NEARLY_FULL = Decimal(counter_ceiling("total_revenue")).quantize(Decimal(1)) + 1 - 10**6


def test_revenue_grows_past_the_hundred_thousand_billions_a_smaller_column_held() -> None:
    model = RegisteredModelFactory.create()

    for _ in range(3):
        model_performance_update(model=model, messages_sent=1, deals_closed=1, revenue=Decimal(9 * 10**13))

    assert model.total_revenue == Decimal(27 * 10**13)


def test_an_increment_past_a_counters_column_is_refused_before_anything_moves() -> None:
    model = RegisteredModelFactory.create()
    RegisteredModel.objects.filter(pk=model.pk).update(total_messages_sent=5, total_revenue=NEARLY_FULL)

    with pytest.raises(CounterOverflow) as refused:
        model_performance_update(model=model, messages_sent=1, deals_closed=1, revenue=10**9)

    assert refused.value.details == {str(model.pk): ["total_revenue"]}
    assert isinstance(refused.value, ApplicationError) and refused.value.status_code == 400
    model.refresh_from_db()
    assert (model.total_messages_sent, model.total_deals_closed) == (5, 0)
    model_performance_update(model=model, messages_sent=1, deals_closed=1, revenue=10)  # what fits still counts
    assert model.total_deals_closed == 1


def test_a_refused_batch_of_increments_tells_what_each_full_model_can_still_take() -> None:
    full, other = RegisteredModelFactory.create(), RegisteredModelFactory.create()
    RegisteredModel.objects.filter(pk=full.pk).update(total_messages_sent=5, total_revenue=NEARLY_FULL)

    with pytest.raises(CounterOverflow) as refused, transaction.atomic():
        model_counters_add(
            increments={full.pk: Counts(deals_closed=2, revenue=Decimal(2 * 10**9)), other.pk: Counts(messages_sent=1)}
        )

    assert refused.value.counters == {full.pk: {"revenue"}}
    room = refused.value.room[full.pk]
    assert room.take(Counts(deals_closed=1, revenue=Decimal(900_000))) is True
    assert room.take(Counts(deals_closed=1, revenue=Decimal(900_000))) is False
    other.refresh_from_db()
    assert other.total_messages_sent == 0
