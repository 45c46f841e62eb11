"""Upserts and funnel events: idempotent, per-item errors, counters moved exactly once."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from flywheel.models import Organization
from outcomes.models import OutcomeLabel
from outcomes.serializers import (
    EventItemSerializer,
    OutcomeItemSerializer,
    check_batch,
    event_items_from,
    outcome_items_from,
)
from outcomes.services import (
    BulkResult,
    EventItem,
    OutcomeItem,
    outcome_event_record,
    outcome_event_record_bulk,
    outcome_upsert,
    outcome_upsert_bulk,
)
from registry.models import RegisteredModel
from tests.factories import OrganizationFactory
from tests.outcomes.factories import OutcomeLabelFactory
from tests.registry.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db

T0 = timezone.now() - datetime.timedelta(days=3)


def item(external_id: str, **extra: Any) -> dict[str, Any]:
    return {"external_id": external_id, "subject": "Quick idea", "body": "Hi there, a short note.", **extra}


def checked(raw: dict[str, Any]) -> OutcomeItem:
    """An item as an agent sends it, checked at the edge."""
    return outcome_items_from([raw])[0]


def upsert_as_sent(organization: Organization, raw_items: list[Any]) -> BulkResult:
    """Items as an agent sends them, checked at the edge; the valid ones written, every item answered."""
    batch = check_batch(raw_items, OutcomeItemSerializer.check)
    return batch.write_with(lambda items: outcome_upsert_bulk(organization=organization, items=items))


def record_as_sent(organization: Organization, raw_events: list[Any]) -> BulkResult:
    """Events as an agent sends them, checked at the edge; the valid ones recorded, every event answered."""
    batch = check_batch(raw_events, EventItemSerializer.check)
    return batch.write_with(lambda events: outcome_event_record_bulk(organization=organization, events=events))


def counters(model: RegisteredModel) -> tuple[int, int, int, int, Decimal]:
    model.refresh_from_db()
    return (
        model.total_messages_sent,
        model.total_replies,
        model.total_meetings_booked,
        model.total_deals_closed,
        model.total_revenue,
    )


# --- upserts -----------------------------------------------------------------------------------


def test_an_upsert_creates_then_updates_the_same_label_by_external_id() -> None:
    org = OrganizationFactory.create()
    first = outcome_upsert(organization=org, item=checked(item("m-1", industry="SaaS")))
    second = outcome_upsert(organization=org, item=checked(item("m-1", industry="FinTech")))
    assert first.pk == second.pk
    assert OutcomeLabel.objects.get().industry == "FinTech"


def test_the_same_external_id_in_two_organizations_is_two_labels() -> None:
    outcome_upsert(organization=OrganizationFactory.create(), item=checked(item("m-1")))
    outcome_upsert(organization=OrganizationFactory.create(), item=checked(item("m-1")))
    assert OutcomeLabel.objects.count() == 2


def test_a_bulk_upsert_keeps_valid_items_and_reports_bad_ones_per_item() -> None:
    items: list[Any] = [item("ok-1"), item("bad-1", icp_match_score=1.5), {"body": "no id"}, "bad", item("ok-2")]
    result = upsert_as_sent(OrganizationFactory.create(), items)
    assert [r.ok for r in result.results] == [True, False, False, False, True]
    assert "icp_match_score" in result.results[1].errors
    assert "external_id" in result.results[2].errors
    assert set(OutcomeLabel.objects.values_list("external_id", flat=True)) == {"ok-1", "ok-2"}


def test_an_unknown_field_is_an_item_error_not_silently_dropped() -> None:
    result = upsert_as_sent(OrganizationFactory.create(), [item("m-1", quality_score=1.0)])
    assert result.results[0].errors == {"quality_score": ["Unknown field."]}


def test_a_model_of_another_organization_cannot_be_attributed() -> None:
    org = OrganizationFactory.create()
    foreign = RegisteredModelFactory.create(organization=OrganizationFactory.create())
    result = outcome_upsert_bulk(organization=org, items=outcome_items_from([item("m-1", model=str(foreign.pk))]))
    assert "model" in result.results[0].errors
    assert not OutcomeLabel.objects.exists()


def test_a_global_model_can_be_attributed_by_any_organization() -> None:
    global_model = RegisteredModelFactory.create(organization=None)
    outcome_upsert(organization=OrganizationFactory.create(), item=checked(item("m-1", model=str(global_model.pk))))
    assert counters(global_model)[0] == 1


def test_personal_data_is_scrubbed_when_a_label_is_written() -> None:
    label = outcome_upsert(
        organization=OrganizationFactory.create(),
        item=checked(
            item(
                "m-1",
                first_name="Maya",
                company="Northwind",
                body="Hi Maya, Northwind could reply to maya@northwind.io or call +1 415 555 0100.",
            )
        ),
    )
    assert "Maya" not in label.body and "Northwind" not in label.body and "@" not in label.body
    assert label.body.startswith("Hi {{first_name}}, {{company}}")


def test_creating_an_attributed_label_counts_one_message_once_even_when_retried() -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    for _ in range(3):
        outcome_upsert_bulk(
            organization=org,
            items=outcome_items_from([item("m-1", model=str(model.pk)), item("m-2", model=str(model.pk))]),
        )
    assert counters(model)[0] == 2


def test_the_model_that_wrote_a_message_cannot_change() -> None:
    org = OrganizationFactory.create()
    a, b = RegisteredModelFactory.create(organization=org), RegisteredModelFactory.create(organization=org)
    outcome_upsert(organization=org, item=checked(item("m-1", model=str(a.pk))))
    with pytest.raises(ValidationError):
        outcome_upsert(organization=org, item=checked(item("m-1", model=str(b.pk))))


# --- events ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "column"),
    [
        ("delivered", "delivered_at"),
        ("opened", "opened_at"),
        ("clicked", "clicked_at"),
        ("replied", "replied_at"),
        ("meeting_booked", "meeting_booked_at"),
        ("meeting_completed", "meeting_completed_at"),
        ("deal_closed", "deal_closed_at"),
        ("bounced", "bounced_at"),
        ("unsubscribed", "unsubscribed_at"),
    ],
)
def test_every_event_type_sets_its_timestamp_and_rescores(kind: str, column: str) -> None:
    label = OutcomeLabelFactory.create()
    assert outcome_event_record(
        organization=label.organization, event=EventItem(external_id=label.external_id, type=kind, occurred_at=T0)
    )
    label.refresh_from_db()
    assert getattr(label, column) == T0
    expected = {"delivered": 0.1, "opened": 0.1, "clicked": 0.15, "replied": 0.2}.get(kind)
    if expected is not None:
        assert label.quality_score == pytest.approx(expected)


def test_a_repeated_event_changes_nothing() -> None:
    label = OutcomeLabelFactory.create()
    org = label.organization
    assert outcome_event_record(
        organization=org, event=EventItem(external_id=label.external_id, type="opened", occurred_at=T0)
    )
    later = T0 + datetime.timedelta(hours=1)
    assert not outcome_event_record(
        organization=org, event=EventItem(external_id=label.external_id, type="opened", occurred_at=later)
    )
    label.refresh_from_db()
    assert label.opened_at == T0


def test_an_earlier_event_arriving_late_moves_the_timestamp_back_without_recounting() -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    outcome_upsert(organization=org, item=checked(item("m-1", model=str(model.pk))))
    outcome_event_record(organization=org, event=EventItem(external_id="m-1", type="replied", occurred_at=T0))
    earlier = T0 - datetime.timedelta(hours=5)
    assert outcome_event_record(
        organization=org, event=EventItem(external_id="m-1", type="replied", occurred_at=earlier)
    )
    assert OutcomeLabel.objects.get().replied_at == earlier
    assert counters(model)[1] == 1


def test_events_out_of_funnel_order_each_count() -> None:
    label = OutcomeLabelFactory.create()
    org = label.organization
    outcome_event_record(
        organization=org, event=EventItem(external_id=label.external_id, type="replied", occurred_at=T0)
    )
    outcome_event_record(
        organization=org,
        event=EventItem(external_id=label.external_id, type="delivered", occurred_at=T0 - datetime.timedelta(hours=1)),
    )
    label.refresh_from_db()
    assert label.quality_score == pytest.approx(0.3)


def test_a_reply_keeps_its_sentiment_and_a_deal_its_value() -> None:
    label = OutcomeLabelFactory.create()
    org = label.organization
    outcome_event_record(
        organization=org, event=EventItem(external_id=label.external_id, type="replied", occurred_at=T0, sentiment=0.9)
    )
    outcome_event_record(
        organization=org,
        event=EventItem(external_id=label.external_id, type="deal_closed", occurred_at=T0, deal_value=Decimal(60000)),
    )
    label.refresh_from_db()
    assert label.reply_sentiment == 0.9
    assert label.deal_value == Decimal(60000)
    assert label.quality_score == 1.0  # 0.2 + 0.2 + 0.5 + 0.2, capped


def test_attributed_funnel_stages_move_the_models_counters_exactly_once() -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    outcome_upsert_bulk(
        organization=org, items=outcome_items_from(item(f"m-{n}", model=str(model.pk)) for n in range(3))
    )
    batch = [
        {"external_id": "m-0", "type": "replied", "occurred_at": T0.isoformat()},
        {"external_id": "m-0", "type": "meeting_booked", "occurred_at": T0.isoformat()},
        {"external_id": "m-0", "type": "deal_closed", "occurred_at": T0.isoformat(), "deal_value": "15000"},
        {"external_id": "m-1", "type": "replied", "occurred_at": T0.isoformat()},
        {"external_id": "m-1", "type": "replied", "occurred_at": (T0 + datetime.timedelta(minutes=1)).isoformat()},
    ]
    outcome_event_record_bulk(organization=org, events=event_items_from(batch))
    outcome_event_record_bulk(organization=org, events=event_items_from(batch))  # a retried delivery
    assert counters(model) == (3, 2, 1, 1, Decimal("15000.00"))
    model.refresh_from_db()
    assert model.reply_rate == pytest.approx(2 / 3)
    assert model.close_rate == pytest.approx(1 / 3)


def test_a_bulk_event_call_keeps_valid_events_and_reports_bad_ones_per_item() -> None:
    label = OutcomeLabelFactory.create()
    result = record_as_sent(
        label.organization,
        [
            {"external_id": label.external_id, "type": "opened", "occurred_at": T0.isoformat()},
            {"external_id": label.external_id, "type": "teleported"},
            {"external_id": "missing", "type": "opened"},
            {"external_id": label.external_id, "type": "opened", "sentiment": 0.5},
            {"external_id": label.external_id, "type": "replied", "sentiment": 3},
            {"external_id": label.external_id, "type": "deal_closed", "deal_value": -5},
            {"external_id": label.external_id, "type": "clicked", "occurred_at": "yesterday"},
            {"external_id": label.external_id, "type": "delivered", "occurred_at": T0.isoformat()},
        ],
    )
    assert [r.ok for r in result.results] == [True, False, False, False, False, False, False, True]
    assert "type" in result.results[1].errors
    assert "external_id" in result.results[2].errors
    assert "sentiment" in result.results[3].errors
    assert "sentiment" in result.results[4].errors
    assert "deal_value" in result.results[5].errors
    assert "occurred_at" in result.results[6].errors
    label.refresh_from_db()
    assert label.opened_at == T0 and label.delivered_at == T0 and label.replied_at is None


def test_events_of_another_organization_do_not_touch_its_labels() -> None:
    label = OutcomeLabelFactory.create()
    result = outcome_event_record_bulk(
        organization=OrganizationFactory.create(),
        events=event_items_from([{"external_id": label.external_id, "type": "opened"}]),
    )
    assert not result.results[0].ok
    label.refresh_from_db()
    assert label.opened_at is None


def test_a_large_batch_is_applied_in_a_handful_of_statements(django_assert_max_num_queries: Any) -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    outcome_upsert_bulk(
        organization=org, items=outcome_items_from(item(f"m-{n}", model=str(model.pk)) for n in range(2500))
    )
    events = event_items_from(
        {"external_id": f"m-{n}", "type": kind} for n in range(2500) for kind in ("delivered", "replied")
    )
    with django_assert_max_num_queries(16):
        outcome_event_record_bulk(organization=org, events=events)
    assert counters(model)[:2] == (2500, 2500)


def test_recompute_quality_scores_rewrites_stored_scores_after_the_weights_change(settings: Any) -> None:
    labels = [OutcomeLabelFactory.create(opened_at=T0) for _ in range(7)]
    settings.QUALITY_WEIGHTS = {**settings.QUALITY_WEIGHTS, "opened": 0.25}
    call_command("recompute_quality_scores", "--chunk-size", "3")
    assert {label.quality_score for label in OutcomeLabel.objects.filter(pk__in=[x.pk for x in labels])} == {0.25}


def test_an_update_may_carry_only_the_fields_it_changes() -> None:
    org = OrganizationFactory.create()
    outcome_upsert(organization=org, item=checked(item("m-1", industry="SaaS")))
    label = outcome_upsert(organization=org, item=checked({"external_id": "m-1", "excluded_from_training": True}))
    assert label.excluded_from_training and label.industry == "SaaS" and label.body


def test_a_new_outcome_needs_a_body() -> None:
    result = outcome_upsert_bulk(
        organization=OrganizationFactory.create(), items=outcome_items_from([{"external_id": "m-1"}])
    )
    assert result.results[0].errors == {"body": ["This field is required for a new outcome."]}
    assert not OutcomeLabel.objects.exists()


def test_a_bulk_upsert_looks_each_model_up_once(django_assert_max_num_queries: Any) -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    items = outcome_items_from(item(f"m-{n}", model=str(model.pk)) for n in range(300))
    # One model lookup and a few writes; SQLite splits the insert by its parameter limit.
    with django_assert_max_num_queries(20):
        result = outcome_upsert_bulk(organization=org, items=items)
    assert result.succeeded == 300
    assert counters(model)[0] == 300
