"""Concurrent writers on PostgreSQL: no counted stage is lost or counted twice, no batch deadlocks."""

import random
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection

from outcomes.serializers import event_items_from, outcome_items_from
from outcomes.services import outcome_event_record_bulk, outcome_upsert_bulk
from tests.concurrency import errors_of, run_at_once
from tests.factories import OrganizationFactory
from tests.registry.factories import RegisteredModelFactory

pytestmark = [
    pytest.mark.postgres_only,
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


def test_overlapping_batches_in_different_orders_neither_deadlock_nor_miscount() -> None:
    org = OrganizationFactory.create()
    models = [RegisteredModelFactory.create(organization=org) for _ in range(2)]
    outcome_upsert_bulk(
        organization=org,
        items=outcome_items_from(
            {"external_id": f"m-{n}", "body": "b", "model": str(models[n % 2].pk)} for n in range(200)
        ),
    )
    pool = [
        {"external_id": f"m-{n}", "type": kind, **({"deal_value": str(100 + n)} if kind == "deal_closed" else {})}
        for n in range(200)
        for kind in ("replied", "meeting_booked", "deal_closed")
    ]

    def writer(seed: int) -> Callable[[], object]:
        events = event_items_from(random.Random(seed).sample(pool, len(pool)))

        def work() -> None:
            for start in range(0, len(events), 150):
                outcome_event_record_bulk(organization=org, events=events[start : start + 150])

        return work

    in_threads([writer(seed) for seed in range(6)])
    for parity, model in enumerate(models):
        model.refresh_from_db()
        revenue = sum(Decimal(100 + n) for n in range(parity, 200, 2))
        assert (model.total_replies, model.total_meetings_booked, model.total_deals_closed) == (100, 100, 100)
        assert model.total_revenue == revenue


def test_attribution_racing_the_labels_events_counts_each_stage_once() -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    ids = [f"m-{n}" for n in range(300)]
    outcome_upsert_bulk(organization=org, items=outcome_items_from({"external_id": i, "body": "b"} for i in ids))
    events = event_items_from(
        {"external_id": i, "type": kind, **({"deal_value": "10"} if kind == "deal_closed" else {})}
        for i in ids
        for kind in ("replied", "deal_closed")
    )
    attribution = outcome_items_from({"external_id": i, "model": str(model.pk)} for i in reversed(ids))
    in_threads(
        [
            lambda: outcome_event_record_bulk(organization=org, events=events),
            lambda: outcome_upsert_bulk(organization=org, items=attribution),
        ]
    )
    model.refresh_from_db()
    assert (model.total_messages_sent, model.total_replies, model.total_deals_closed) == (300, 300, 300)
    assert model.total_revenue == Decimal(3000)
