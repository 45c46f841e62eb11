"""A model whose revenue counter is nearly full: what it cannot take is refused item by item, the rest is written."""

from decimal import Decimal
from typing import Any

import pytest
from django.db.backends.base.operations import BaseDatabaseOperations

from outcomes.models import MAX_DEAL_VALUE, OutcomeLabel
from outcomes.serializers import event_items_from, outcome_items_from
from outcomes.services import outcome_event_record_bulk, outcome_upsert_bulk
from registry.models import RegisteredModel
from registry.services.performance import counter_ceiling
from tests.api_clients import Tenant
from tests.factories import OrganizationFactory
from tests.registry.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db

# A million below the ceiling: a maximum deal does not fit, a small one does. (Round enough for
# SQLite, which keeps decimals as floating point numbers.)
NEARLY_FULL = Decimal(counter_ceiling("total_revenue")).quantize(Decimal(1)) + 1 - 10**6


def nearly_full_model(org: Any) -> RegisteredModel:
    model = RegisteredModelFactory.create(organization=org)
    RegisteredModel.objects.filter(pk=model.pk).update(total_messages_sent=10, total_revenue=NEARLY_FULL)
    return model


def deal(external_id: str, value: Decimal | int) -> dict[str, Any]:
    return {"external_id": external_id, "type": "deal_closed", "deal_value": str(value)}


def test_the_revenue_counter_holds_every_deal_a_model_can_close() -> None:
    most_deals = BaseDatabaseOperations.integer_field_ranges["PositiveIntegerField"][1]  # PostgreSQL's integer
    assert counter_ceiling("total_revenue") >= most_deals * MAX_DEAL_VALUE


def test_a_deal_a_full_counter_cannot_take_is_refused_alone_and_the_rest_of_the_batch_is_written() -> None:
    org = OrganizationFactory.create()
    full, other = nearly_full_model(org), RegisteredModelFactory.create(organization=org)
    outcome_upsert_bulk(
        organization=org,
        items=outcome_items_from(
            {"external_id": f"m-{n}", "body": "b", "model": str(model.pk)}
            for n, model in enumerate([full, full, other])
        ),
    )
    batch = [
        deal("m-0", MAX_DEAL_VALUE),
        {"external_id": "m-0", "type": "replied"},
        deal("m-1", 10),
        deal("m-2", MAX_DEAL_VALUE),
    ]
    results = outcome_event_record_bulk(organization=org, events=event_items_from(batch)).results

    assert [r.ok for r in results] == [False, True, True, True]
    assert "no room" in results[0].errors["non_field_errors"][0]
    assert OutcomeLabel.objects.get(external_id="m-0").deal_closed_at is None
    full.refresh_from_db()
    other.refresh_from_db()
    assert (full.total_replies, full.total_deals_closed) == (1, 1)
    assert full.total_revenue < NEARLY_FULL + 11  # the $10 deal, not the billion
    assert (other.total_deals_closed, other.total_revenue) == (1, MAX_DEAL_VALUE)


def test_a_refused_deal_answers_400_and_a_later_small_one_still_counts(tenant: Tenant) -> None:
    model = nearly_full_model(tenant.organization)
    for n in range(2):
        item = {"external_id": f"m-{n}", "body": "b", "model": str(model.pk)}
        assert tenant.agent.post("/api/outcomes", item, format="json").status_code == 200

    refused = tenant.agent.post("/api/outcomes/events", deal("m-0", MAX_DEAL_VALUE), format="json")
    later = tenant.agent.post("/api/outcomes/events", deal("m-1", 10), format="json")

    assert refused.status_code == 400
    assert "non_field_errors" in refused.json()["error"]["details"]
    assert later.status_code == 200
    model.refresh_from_db()
    assert model.total_deals_closed == 1


def test_late_attribution_to_a_full_model_refuses_only_the_labels_it_cannot_take() -> None:
    org = OrganizationFactory.create()
    model = nearly_full_model(org)
    outcome_upsert_bulk(
        organization=org, items=outcome_items_from({"external_id": f"m-{n}", "body": "b"} for n in range(2))
    )
    outcome_event_record_bulk(organization=org, events=event_items_from([deal("m-0", MAX_DEAL_VALUE)]))

    results = outcome_upsert_bulk(
        organization=org,
        items=outcome_items_from({"external_id": f"m-{n}", "model": str(model.pk)} for n in range(2)),
    ).results

    assert [r.ok for r in results] == [False, True]
    assert "model" in results[0].errors
    assert OutcomeLabel.objects.get(external_id="m-0").model_id is None
    assert OutcomeLabel.objects.get(external_id="m-1").model_id == model.pk
    model.refresh_from_db()
    assert (model.total_messages_sent, model.total_deals_closed) == (11, 0)
