"""The lead of an outcome: sent as the routing's lead key, kept only as a keyed hash, never shown or exported."""

import hashlib
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings

from outcomes.leads import lead_key_hash
from outcomes.models import OutcomeLabel
from tests.api_clients import Tenant, assert_error
from tests.factories import UserFactory
from tests.outcomes.factories import OutcomeLabelFactory, reached
from training.datasets import OutcomeDataFormatter

pytestmark = pytest.mark.django_db

LEAD = "ana.lopez@example.com"


def message(external_id: str, **fields: Any) -> dict[str, Any]:
    return {"external_id": external_id, "body": "Hi {{first_name}}, a short note.", **fields}


def stored_values(label: OutcomeLabel) -> list[str]:
    """Every column of the label's row, as text."""
    row = OutcomeLabel.objects.filter(pk=label.pk).values().get()
    return [str(value) for value in row.values()]


def test_the_lead_key_is_stored_as_its_keyed_hash_and_never_raw(tenant: Tenant) -> None:
    response = tenant.agent.post("/api/outcomes", message("m-1", lead=LEAD), format="json")

    assert response.status_code == 200
    label = OutcomeLabel.objects.get(external_id="m-1")
    assert label.lead_hash == lead_key_hash(LEAD) and len(label.lead_hash) == 64
    assert label.lead_hash != hashlib.sha256(LEAD.encode()).hexdigest()  # keyed: not a plain digest
    assert not any(LEAD in value for value in stored_values(label))
    assert LEAD not in response.content.decode() and label.lead_hash not in response.content.decode()


def test_the_same_key_gives_the_same_hash_and_another_secret_another() -> None:
    assert lead_key_hash(LEAD) == lead_key_hash(LEAD) != lead_key_hash("someone@example.com")
    with override_settings(LEAD_KEY_HASH_SECRET="rotated"):
        rotated = lead_key_hash(LEAD)
    assert rotated != lead_key_hash(LEAD)


def test_a_message_without_a_lead_key_has_no_lead(tenant: Tenant) -> None:
    assert tenant.agent.post("/api/outcomes", message("m-1"), format="json").status_code == 200

    assert OutcomeLabel.objects.get(external_id="m-1").lead_hash == ""


@pytest.mark.parametrize("lead", ["x" * 256, "", "   ", None])
def test_a_lead_key_too_long_or_blank_answers_400(tenant: Tenant, lead: Any) -> None:
    error = assert_error(tenant.agent.post("/api/outcomes", message("m-1", lead=lead), format="json"), 400)

    assert "lead" in error["details"]
    assert not OutcomeLabel.objects.exists()


def test_the_lead_of_a_message_cannot_change(tenant: Tenant) -> None:
    tenant.agent.post("/api/outcomes", message("m-1", lead=LEAD), format="json")

    response = tenant.agent.post("/api/outcomes", message("m-1", lead="someone@example.com"), format="json")

    assert "lead" in assert_error(response, 400)["details"]
    assert OutcomeLabel.objects.get(external_id="m-1").lead_hash == lead_key_hash(LEAD)


def test_the_same_lead_key_sent_again_changes_nothing(tenant: Tenant) -> None:
    tenant.agent.post("/api/outcomes", message("m-1", lead=LEAD), format="json")

    response = tenant.agent.post("/api/outcomes", message("m-1", lead=LEAD), format="json")

    assert response.json()["results"][0]["changed"] is False


def test_the_export_never_writes_the_lead_hash(tmp_path: Path) -> None:
    label = OutcomeLabelFactory.create(
        lead_hash=lead_key_hash(LEAD), **reached("delivered opened replied meeting_booked")
    )
    for n in range(11):
        OutcomeLabelFactory.create(
            organization=label.organization,
            lead_hash=lead_key_hash(f"lead-{n}"),
            body=f"Hi {{{{first_name}}}}, note number {n} about pipeline reviews.",
            **reached("delivered opened replied meeting_booked"),
        )

    OutcomeDataFormatter().export_to_jsonl(tmp_path / "sft.jsonl", organization_id=label.organization_id)

    text = (tmp_path / "sft.jsonl").read_text()
    assert text.count("\n") >= 10
    hashes = OutcomeLabel.objects.values_list("lead_hash", flat=True)
    assert not any(value in text for value in hashes) and "lead_hash" not in text


def test_the_admin_never_shows_the_lead_hash(client: Client) -> None:
    label = OutcomeLabelFactory.create(lead_hash=lead_key_hash(LEAD))
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))

    page = client.get(f"/admin/outcomes/outcomelabel/{label.pk}/change/")
    listing = client.get("/admin/outcomes/outcomelabel/")

    assert page.status_code == listing.status_code == 200
    assert label.lead_hash not in page.content.decode() and label.lead_hash not in listing.content.decode()
