"""The edge's limits: each text's longest length, the largest deal, how far ahead a time may be."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from outcomes.models import BODY_MAX_LENGTH, MAX_DEAL_VALUE, OutcomeLabel
from tests.api_clients import Tenant
from tests.outcomes.factories import OutcomeLabelFactory

pytestmark = pytest.mark.django_db

# Every text field of an outcome and its longest accepted length.
TEXT_LIMITS = {
    "external_id": 255,
    "industry": 100,
    "role": 100,
    "company_size": 50,
    "framework": 50,
    "tone": 50,
    "channel": 50,
    "first_name": 100,
    "last_name": 100,
    "company": 200,
    "prompt": 20_000,
    "subject": 500,
    "body": 20_000,
    "reviewer_note": 5_000,
    "ideal_body": 20_000,
}


def outcome(**fields: Any) -> dict[str, Any]:
    return {"external_id": "msg-1", "body": "Hi there, a short note.", **fields}


@pytest.mark.parametrize(("name", "limit"), TEXT_LIMITS.items())
def test_each_text_field_longer_than_its_limit_answers_400_and_writes_nothing(
    tenant: Tenant, name: str, limit: int
) -> None:
    response = tenant.agent.post("/api/outcomes", outcome(**{name: "x" * (limit + 1)}), format="json")
    assert response.status_code == 400
    assert name in response.json()["error"]["details"]
    assert not OutcomeLabel.objects.exists()


@pytest.mark.parametrize(("name", "limit"), TEXT_LIMITS.items())
def test_each_text_field_at_its_limit_is_written(tenant: Tenant, name: str, limit: int) -> None:
    response = tenant.agent.post("/api/outcomes", outcome(**{name: "x" * limit}), format="json")
    assert response.status_code == 200, response.json()
    assert OutcomeLabel.objects.count() == 1


def test_the_schema_states_the_longest_length_of_every_text_field(tenant: Tenant) -> None:
    schema = tenant.agent.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    properties = schema["components"]["schemas"]["OutcomeItemRequest"]["properties"]
    assert {name: properties[name].get("maxLength") for name in TEXT_LIMITS} == TEXT_LIMITS
    deal = schema["components"]["schemas"]["EventItemRequest"]["properties"]["deal_value"]
    assert Decimal(str(deal["maximum"])) == MAX_DEAL_VALUE


def test_a_reviewers_ideal_body_over_its_limit_is_refused_before_it_is_scrubbed() -> None:
    from django.core.exceptions import ValidationError

    from outcomes.services import outcome_curate

    label = OutcomeLabelFactory.create(first_name="Jo")
    with pytest.raises(ValidationError) as error:
        outcome_curate(label=label, excluded_from_training=False, ideal_body="Jo " * BODY_MAX_LENGTH)
    assert "ideal_body" in error.value.message_dict
    label.refresh_from_db()
    assert label.ideal_body == ""


def test_a_deal_above_the_largest_one_event_may_carry_is_refused(tenant: Tenant) -> None:
    label = OutcomeLabelFactory.create(organization=tenant.organization)
    events = [
        {"external_id": label.external_id, "type": "deal_closed", "deal_value": str(MAX_DEAL_VALUE + Decimal("0.01"))},
        {"external_id": label.external_id, "type": "deal_closed", "deal_value": str(MAX_DEAL_VALUE)},
    ]
    body = tenant.agent.post("/api/outcomes/events", events, format="json").json()
    assert [r["ok"] for r in body["results"]] == [False, True]
    assert "deal_value" in body["results"][0]["errors"]
    label.refresh_from_db()
    assert label.deal_value == MAX_DEAL_VALUE


@pytest.mark.parametrize(
    ("ahead", "accepted"),
    [(datetime.timedelta(hours=23), True), (datetime.timedelta(days=2), False), (None, False)],
)
def test_a_sent_time_follows_the_events_rule_at_most_a_day_ahead(
    tenant: Tenant, ahead: datetime.timedelta | None, accepted: bool
) -> None:
    sent_at = "9999-12-31T00:00:00Z" if ahead is None else (timezone.now() + ahead).isoformat()
    single = tenant.agent.post("/api/outcomes", outcome(sent_at=sent_at), format="json")
    event = {"external_id": "msg-1", "type": "opened", "occurred_at": sent_at}
    if accepted:
        assert single.status_code == 200
        assert tenant.agent.post("/api/outcomes/events", event, format="json").status_code == 200
    else:
        assert single.status_code == 400
        assert single.json()["error"]["details"] == {"sent_at": ["Cannot be in the future."]}
        assert not OutcomeLabel.objects.exists()
