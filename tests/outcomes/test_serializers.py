"""The edge: each raw item checked once into the typed item a service takes, with every error it has."""

import datetime
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from outcomes.serializers import (
    EventItemSerializer,
    OutcomeItemSerializer,
    check_batch,
    event_items_from,
    outcome_items_from,
)
from outcomes.services import BulkResult, EventItem, ItemResult, OutcomeItem


def errors_of(check: Any, raw: Any) -> Any:
    with pytest.raises(ValidationError) as caught:
        check(raw)
    return caught.value.detail


def test_an_outcome_item_carries_only_the_fields_sent_typed() -> None:
    model_id = uuid.uuid4()
    item = OutcomeItemSerializer.check(
        {"external_id": " m-1 ", "model": str(model_id), "icp_match_score": "0.5", "sent_at": "2025-01-20T09:30:00Z"}
    )
    assert item == OutcomeItem(
        external_id="m-1",
        model_id=model_id,
        icp_match_score=0.5,
        sent_at=datetime.datetime(2025, 1, 20, 9, 30, tzinfo=datetime.UTC),
    )
    assert item.values() == {"icp_match_score": 0.5, "sent_at": item.sent_at}


def test_a_body_that_is_sent_cannot_be_blank() -> None:
    assert errors_of(OutcomeItemSerializer.check, {"external_id": "m-1", "body": ""}) == {
        "body": ["This field cannot be blank."]
    }


def test_an_outcome_item_reports_unknown_and_bad_fields_together() -> None:
    detail = errors_of(OutcomeItemSerializer.check, {"external_id": "", "icp_match_score": 3, "zzz": 1})
    assert set(detail) == {"external_id", "icp_match_score", "zzz"}
    assert detail["zzz"] == ["Unknown field."]


def test_an_event_without_a_time_happened_now() -> None:
    before = timezone.now()
    event = EventItemSerializer.check({"external_id": "m-1", "type": "opened", "occurred_at": None})
    assert before <= event.occurred_at <= timezone.now()
    assert (event.sentiment, event.deal_value) == (None, None)


def test_an_event_keeps_its_reply_sentiment_and_deal_value_typed() -> None:
    reply = EventItemSerializer.check({"external_id": "m-1", "type": "replied", "sentiment": "0.25"})
    deal = EventItemSerializer.check({"external_id": "m-1", "type": "deal_closed", "deal_value": "1234.5"})
    assert reply.sentiment == 0.25
    assert deal.deal_value == Decimal("1234.50")


def test_an_event_more_than_a_day_ahead_is_refused() -> None:
    ahead = (timezone.now() + datetime.timedelta(days=2)).isoformat()
    assert errors_of(EventItemSerializer.check, {"external_id": "m-1", "type": "opened", "occurred_at": ahead}) == {
        "occurred_at": ["Cannot be in the future."]
    }
    soon = (timezone.now() + datetime.timedelta(hours=1)).isoformat()
    assert EventItemSerializer.check({"external_id": "m-1", "type": "opened", "occurred_at": soon})


def test_a_figure_of_another_stage_is_refused_with_every_rule_broken() -> None:
    raw = {
        "external_id": "m-1",
        "type": "opened",
        "occurred_at": "2999-01-01T00:00:00Z",
        "sentiment": 0.1,
        "deal_value": 5,
    }
    assert errors_of(EventItemSerializer.check, raw) == {
        "occurred_at": ["Cannot be in the future."],
        "sentiment": ["Only allowed with a replied event."],
        "deal_value": ["Only allowed with a deal_closed event."],
    }


def test_the_stage_rules_wait_for_well_formed_fields() -> None:
    detail = errors_of(EventItemSerializer.check, {"external_id": "m-1", "type": "teleported", "sentiment": 0.5})
    assert set(detail) == {"type"}


def test_a_checked_batch_answers_every_item_in_the_request_order() -> None:
    raw = [{"external_id": "a", "type": "opened"}, "bad", {"external_id": "b", "type": "x"}, {"external_id": "c"}]
    batch = check_batch([*raw, {"external_id": "d", "type": "clicked"}], EventItemSerializer.check)
    assert [event.external_id for event in batch.items] == ["a", "d"]

    def write(events: list[EventItem]) -> BulkResult:
        return BulkResult([ItemResult(index=n, external_id=e.external_id, ok=True) for n, e in enumerate(events)])

    results = batch.write_with(write).results
    assert [(r.index, r.external_id, r.ok) for r in results] == [
        (0, "a", True),
        (1, "", False),
        (2, "b", False),
        (3, "c", False),
        (4, "d", True),
    ]
    assert results[1].errors == {"non_field_errors": ["Expected an object, not str."]}
    assert set(results[2].errors) == {"type"}


def test_a_batch_with_no_valid_item_writes_nothing() -> None:
    def write(events: list[EventItem]) -> BulkResult:
        raise AssertionError("nothing to write")

    results = check_batch(["bad"], EventItemSerializer.check).write_with(write).results
    assert [r.ok for r in results] == [False]


def test_items_from_dicts_name_each_bad_index() -> None:
    assert [e.type for e in event_items_from([{"external_id": "a", "type": "opened"}])] == ["opened"]
    with pytest.raises(ValidationError) as caught:
        outcome_items_from([{"external_id": "a"}, {"body": "b"}, {"external_id": "c", "role": 7}])
    assert set(caught.value.detail) == {"1"}
