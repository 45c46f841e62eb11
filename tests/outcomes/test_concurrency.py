"""Concurrent writers on PostgreSQL: no counted stage is lost or counted twice."""

from collections.abc import Callable

import pytest
from django.db import connection

from outcomes.serializers import event_items_from, outcome_items_from
from outcomes.services import outcome_event_record_bulk, outcome_upsert_bulk
from tests.concurrency import errors_of, run_at_once
from tests.factories import OrganizationFactory
from tests.registry.factories import RegisteredModelFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks across connections need PostgreSQL"),
]


def in_threads(work: list[Callable[[], object]]) -> None:
    errors = errors_of(run_at_once(work))
    assert not errors, errors


def test_concurrent_writers_of_the_same_events_count_each_stage_once() -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    outcome_upsert_bulk(
        organization=org,
        items=outcome_items_from({"external_id": f"m-{n}", "body": "b", "model": str(model.pk)} for n in range(300)),
    )
    events = event_items_from(
        {"external_id": f"m-{n}", "type": kind} for n in range(300) for kind in ("replied", "meeting_booked")
    )
    in_threads([lambda: outcome_event_record_bulk(organization=org, events=events) for _ in range(6)])
    model.refresh_from_db()
    assert (model.total_replies, model.total_meetings_booked) == (300, 300)


def test_concurrent_writers_of_different_labels_lose_no_update() -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)

    def writer(part: int) -> Callable[[], object]:
        ids = [f"p{part}-{n}" for n in range(100)]

        def work() -> None:
            items = outcome_items_from({"external_id": i, "body": "b", "model": str(model.pk)} for i in ids)
            outcome_upsert_bulk(organization=org, items=items)
            events = event_items_from({"external_id": i, "type": "replied"} for i in ids)
            outcome_event_record_bulk(organization=org, events=events)

        return work

    in_threads([writer(part) for part in range(6)])
    model.refresh_from_db()
    assert (model.total_messages_sent, model.total_replies) == (600, 600)
