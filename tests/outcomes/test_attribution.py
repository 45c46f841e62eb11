"""Naming a label's model after its events: the model counts everything the label reached, once."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from outcomes.serializers import event_items_from, outcome_items_from
from outcomes.services import outcome_event_record_bulk, outcome_upsert_bulk
from registry.models import RegisteredModel
from tests.factories import OrganizationFactory
from tests.registry.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db

T0 = timezone.now() - datetime.timedelta(days=2)


def counters(model: RegisteredModel) -> tuple[Any, ...]:
    model.refresh_from_db()
    fields = ("total_messages_sent", "total_replies", "total_meetings_booked", "total_deals_closed")
    return (*(getattr(model, name) for name in fields), model.total_revenue)


def upsert(org: Any, *items: dict[str, Any]) -> Any:
    return outcome_upsert_bulk(organization=org, items=outcome_items_from(items))


def record(org: Any, *events: dict[str, Any]) -> Any:
    return outcome_event_record_bulk(organization=org, events=event_items_from(events))


def test_a_model_named_after_the_events_counts_every_stage_the_label_reached() -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    upsert(org, {"external_id": "m-1", "body": "b"}, {"external_id": "m-2", "body": "b"})
    record(
        org,
        {"external_id": "m-1", "type": "replied", "occurred_at": T0.isoformat()},
        {"external_id": "m-1", "type": "meeting_booked", "occurred_at": T0.isoformat()},
        {"external_id": "m-1", "type": "deal_closed", "occurred_at": T0.isoformat(), "deal_value": "15000"},
        {"external_id": "m-2", "type": "opened", "occurred_at": T0.isoformat()},
    )
    assert counters(model) == (0, 0, 0, 0, Decimal(0))

    upsert(org, {"external_id": "m-1", "model": str(model.pk)}, {"external_id": "m-2", "model": str(model.pk)})

    assert counters(model) == (2, 1, 1, 1, Decimal("15000.00"))


def test_late_attribution_is_counted_once_however_often_it_is_repeated_or_followed_by_events() -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    upsert(org, {"external_id": "m-1", "body": "b"})
    deal = {"external_id": "m-1", "type": "deal_closed", "occurred_at": T0.isoformat(), "deal_value": "900"}
    record(org, {"external_id": "m-1", "type": "replied", "occurred_at": T0.isoformat()}, deal)
    for _ in range(3):
        upsert(org, {"external_id": "m-1", "model": str(model.pk)})
    record(org, {"external_id": "m-1", "type": "replied", "occurred_at": T0.isoformat()}, deal)
    record(org, {"external_id": "m-1", "type": "meeting_booked", "occurred_at": T0.isoformat()})

    assert counters(model) == (1, 1, 1, 1, Decimal("900.00"))


def test_a_label_attributed_from_the_start_still_counts_its_stages_through_events_only() -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    upsert(org, {"external_id": "m-1", "body": "b", "model": str(model.pk)})
    record(org, {"external_id": "m-1", "type": "replied", "occurred_at": T0.isoformat()})
    upsert(org, {"external_id": "m-1", "model": str(model.pk), "subject": "again"})

    assert counters(model) == (1, 1, 0, 0, Decimal(0))
