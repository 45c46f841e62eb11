"""POST /api/outcomes and POST /api/outcomes/events: bulk upserts and funnel events from agents."""

from typing import Any

import pytest
from django.test import override_settings

from outcomes.models import OutcomeLabel
from registry.models import RegisteredModel
from tests.api_clients import Tenant, assert_error
from tests.registry.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db


def message(external_id: str, **fields: Any) -> dict[str, Any]:
    """An outcome item like the ones agents send."""
    return {
        "external_id": external_id,
        "industry": "SaaS",
        "role": "VP Sales",
        "framework": "PAS",
        "tone": "professional",
        "channel": "email",
        "icp_match_score": 0.9,
        "subject": "Transform your sales process",
        "body": "Hi {{first_name}}, most VP Sales teams in SaaS lose hours to stale pipeline.",
        "sent_at": "2025-01-20T09:30:00Z",
        **fields,
    }


def test_it_creates_one_outcome_from_a_single_object(tenant: Tenant) -> None:
    model = RegisteredModelFactory.create(organization=tenant.organization)
    response = tenant.agent.post("/api/outcomes", message("msg-1", model=str(model.pk)), format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["succeeded"], body["failed"]) == (1, 1, 0)
    result = body["results"][0]
    label = OutcomeLabel.objects.get(organization=tenant.organization, external_id="msg-1")
    assert result == {
        "index": 0,
        "external_id": "msg-1",
        "ok": True,
        "id": str(label.pk),
        "created": True,
        "changed": True,
        "errors": {},
    }
    assert label.model_id == model.pk and label.industry == "SaaS"
    model.refresh_from_db()
    assert model.total_messages_sent == 1


def test_it_upserts_a_list_and_a_retry_changes_nothing(tenant: Tenant) -> None:
    items = [message(f"msg-{n}") for n in range(3)]
    first = tenant.agent.post("/api/outcomes", items, format="json").json()
    retry = tenant.agent.post("/api/outcomes", items, format="json").json()
    assert [r["created"] for r in first["results"]] == [True, True, True]
    assert [(r["created"], r["changed"]) for r in retry["results"]] == [(False, False)] * 3
    assert [r["id"] for r in retry["results"]] == [r["id"] for r in first["results"]]
    assert OutcomeLabel.objects.filter(organization=tenant.organization).count() == 3


def test_it_updates_the_fields_sent_and_keeps_the_others(tenant: Tenant) -> None:
    tenant.agent.post("/api/outcomes", message("msg-1"), format="json")
    update = {"external_id": "msg-1", "tone": "casual", "body": message("msg-1")["body"]}
    response = tenant.agent.post("/api/outcomes", update, format="json")
    assert response.json()["results"][0]["changed"] is True
    label = OutcomeLabel.objects.get(external_id="msg-1")
    assert (label.tone, label.industry) == ("casual", "SaaS")


def test_a_bad_item_is_reported_and_the_valid_ones_are_kept(tenant: Tenant) -> None:
    items = [
        message("ok-1"),
        message("bad-icp", icp_match_score=1.5),
        "not an object",
        message("bad-model", model="7b0c7a5e-0000-4000-8000-000000000000"),
        message("typo", subjcet="Hello"),
        message("ok-2"),
    ]
    body = tenant.agent.post("/api/outcomes", items, format="json").json()
    assert (body["total"], body["succeeded"], body["failed"]) == (6, 2, 4)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["ok"] for r in results] == [True, False, False, False, False, True]
    assert "icp_match_score" in results[1]["errors"]
    assert "non_field_errors" in results[2]["errors"]
    assert "model" in results[3]["errors"]
    assert results[4]["errors"] == {"subjcet": ["Unknown field."]}
    stored = set(OutcomeLabel.objects.values_list("external_id", flat=True))
    assert stored == {"ok-1", "ok-2"}


def test_a_single_invalid_object_answers_400_with_its_field_errors(tenant: Tenant) -> None:
    response = tenant.agent.post("/api/outcomes", {"external_id": "x", "icp_match_score": "NaN"}, format="json")
    error = assert_error(response, 400)
    assert "icp_match_score" in error["details"]


def test_a_new_message_needs_a_body(tenant: Tenant) -> None:
    error = assert_error(tenant.agent.post("/api/outcomes", {"external_id": "x"}, format="json"), 400)
    assert "body" in error["details"]


def test_another_organizations_model_cannot_be_named(tenant: Tenant, other: Tenant) -> None:
    theirs = RegisteredModelFactory.create(organization=other.organization)
    response = tenant.agent.post("/api/outcomes", [message("m", model=str(theirs.pk))], format="json")
    assert response.json()["results"][0]["errors"]["model"]
    assert not OutcomeLabel.objects.exists()


def test_a_global_model_can_be_named(tenant: Tenant) -> None:
    shared = RegisteredModelFactory.create(organization=None)
    response = tenant.agent.post("/api/outcomes", [message("m", model=str(shared.pk))], format="json")
    assert response.json()["results"][0]["ok"] is True


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([], "empty_batch"),
        ("text", "invalid_body"),
        (7, "invalid_body"),
        ([{"external_id": "x"}] * 1001, "too_many_items"),
    ],
)
def test_it_refuses_bodies_that_are_not_a_batch(tenant: Tenant, body: Any, code: str) -> None:
    assert_error(tenant.agent.post("/api/outcomes", body, format="json"), 400, code)


def test_malformed_json_answers_400(tenant: Tenant) -> None:
    response = tenant.agent.post("/api/outcomes", b'{"external_id": ', content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_a_form_body_answers_415(tenant: Tenant) -> None:
    response = tenant.agent.post("/api/outcomes", {"external_id": "x"}, format="multipart")
    assert_error(response, 415, "unsupported_media_type")


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000)
def test_a_body_over_the_size_limit_answers_413_and_writes_nothing(tenant: Tenant) -> None:
    items = [message(f"msg-{n}") for n in range(100)]
    error = assert_error(tenant.agent.post("/api/outcomes", items, format="json"), 413, "request_too_large")
    assert error["details"] == {"max_bytes": 10_000}
    assert not OutcomeLabel.objects.exists()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000)
def test_events_over_the_size_limit_answer_413(tenant: Tenant) -> None:
    events = [{"external_id": f"msg-{n}", "type": "opened"} for n in range(500)]
    assert_error(tenant.agent.post("/api/outcomes/events", events, format="json"), 413, "request_too_large")


# --- Events ---------------------------------------------------------------------------------------


def test_events_move_the_funnel_and_the_models_counters(tenant: Tenant) -> None:
    model = RegisteredModelFactory.create(organization=tenant.organization)
    tenant.agent.post("/api/outcomes", message("msg-1", model=str(model.pk)), format="json")
    events = [
        {"external_id": "msg-1", "type": "delivered", "occurred_at": "2025-01-20T09:31:00Z"},
        {"external_id": "msg-1", "type": "replied", "occurred_at": "2025-01-21T10:00:00Z", "sentiment": 0.8},
        {"external_id": "msg-1", "type": "deal_closed", "occurred_at": "2025-02-01T10:00:00Z", "deal_value": 15000},
    ]
    body = tenant.agent.post("/api/outcomes/events", events, format="json").json()
    assert (body["succeeded"], body["failed"]) == (3, 0)
    assert all(r["changed"] for r in body["results"])
    label = OutcomeLabel.objects.get(external_id="msg-1")
    assert label.replied_at is not None and label.reply_sentiment == 0.8 and label.deal_value == 15000
    assert label.quality_score > 0.5
    model.refresh_from_db()
    assert (model.total_replies, model.total_deals_closed) == (1, 1)


def test_a_retried_event_batch_changes_nothing(tenant: Tenant) -> None:
    model = RegisteredModelFactory.create(organization=tenant.organization)
    tenant.agent.post("/api/outcomes", message("msg-1", model=str(model.pk)), format="json")
    events = [{"external_id": "msg-1", "type": "replied", "occurred_at": "2025-01-21T10:00:00Z"}]
    tenant.agent.post("/api/outcomes/events", events, format="json")
    before = OutcomeLabel.objects.values().get(external_id="msg-1")
    retry = tenant.agent.post("/api/outcomes/events", events, format="json").json()
    assert retry["results"][0]["ok"] is True and retry["results"][0]["changed"] is False
    after = OutcomeLabel.objects.values().get(external_id="msg-1")
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }
    assert RegisteredModel.objects.get(pk=model.pk).total_replies == 1


def test_bad_events_are_reported_and_good_ones_applied(tenant: Tenant, other: Tenant) -> None:
    tenant.agent.post("/api/outcomes", message("mine"), format="json")
    other.agent.post("/api/outcomes", message("theirs"), format="json")
    events = [
        {"external_id": "mine", "type": "opened"},
        {"external_id": "mine", "type": "teleported"},
        {"external_id": "mine", "type": "opened", "sentiment": 0.5},
        {"external_id": "theirs", "type": "opened"},
        {"external_id": "mine", "type": "replied", "sentiment": 2},
    ]
    body = tenant.agent.post("/api/outcomes/events", events, format="json").json()
    assert [r["ok"] for r in body["results"]] == [True, False, False, False, False]
    assert "type" in body["results"][1]["errors"]
    assert "sentiment" in body["results"][2]["errors"]
    assert "external_id" in body["results"][3]["errors"]
    assert "sentiment" in body["results"][4]["errors"]
    assert OutcomeLabel.objects.get(external_id="theirs").opened_at is None


def test_staff_must_name_the_organization_of_the_outcomes(tenant: Tenant, staff: Any) -> None:
    assert_error(staff.post("/api/outcomes", message("x"), format="json"), 400, "organization_required")
    url = f"/api/outcomes?organization_id={tenant.organization.pk}"
    assert staff.post(url, message("x"), format="json").json()["succeeded"] == 1
    assert OutcomeLabel.objects.get(external_id="x").organization == tenant.organization
