"""Tenancy and demo commands."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from flywheel.models import Organization, OrganizationAPIKey
from outcomes.models import OutcomeLabel
from registry.models import RegisteredModel

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_organization_prints_a_key_that_is_stored_only_hashed() -> None:
    output = run("create_organization", "Acme Corp", "--key-role", "ops")
    secret = output.rsplit(": ", 1)[1].strip()
    organization = Organization.objects.get(slug="acme-corp")
    key = OrganizationAPIKey.objects.get(organization=organization)
    assert key.role == "ops"
    assert secret not in key.hashed_key and key.is_valid(secret)


def test_create_organization_refuses_a_taken_slug() -> None:
    run("create_organization", "Acme Corp")
    with pytest.raises(CommandError, match="already exists"):
        run("create_organization", "Acme Corp")


def test_seed_demo_data_is_deterministic_and_idempotent() -> None:
    run("seed_demo_data", "--labels", "60", "--seed", "5")
    first = sorted(OutcomeLabel.objects.values_list("external_id", "quality_score"))
    run("seed_demo_data", "--labels", "60", "--seed", "5")
    assert sorted(OutcomeLabel.objects.values_list("external_id", "quality_score")) == first
    assert len(first) == 60
    base = RegisteredModel.objects.get(model_version="v2.0.0")
    tuned = RegisteredModel.objects.get(model_version="v2.1.0")
    assert base.total_messages_sent + tuned.total_messages_sent == 60
    assert base.status == "deployed" and base.traffic_percentage == 100.0
    assert OutcomeLabel.objects.filter(quality_score__gte=0.6).exists()


def test_the_demo_superuser_gets_a_fresh_printed_password(settings: object) -> None:
    from django.contrib.auth import authenticate
    from django.test import RequestFactory

    settings.DEBUG = True  # type: ignore[attr-defined]
    password = run("ensure_demo_superuser").rsplit(": ", 1)[1].strip()
    login = RequestFactory().post("/admin/login/")  # login throttling counts per request
    assert authenticate(login, username="admin", password=password) is not None


def test_a_key_issued_by_command_for_an_existing_organization_authenticates_until_it_is_revoked() -> None:
    run("create_organization", "Acme Corp")
    output = run("api_keys", "issue", "acme-corp", "--role", "ops", "--name", "cron")
    secret = output.rsplit(": ", 1)[1].strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    assert client.get("/training/stats").status_code == 200
    prefix = secret.partition(".")[0]
    assert f"{prefix}  ops    active" in run("api_keys", "list", "acme-corp")
    assert "is revoked" in run("api_keys", "revoke", "acme-corp", prefix)
    assert "is revoked" in run("api_keys", "revoke", "acme-corp", prefix)  # again: nothing changes
    assert client.get("/training/stats").status_code == 401
    assert f"{prefix}  ops    revoked" in run("api_keys", "list", "acme-corp")


def test_api_keys_name_what_they_cannot_find() -> None:
    run("create_organization", "Acme Corp")
    with pytest.raises(CommandError, match="No organization"):
        run("api_keys", "issue", "nobody")
    with pytest.raises(CommandError, match="no API key with the prefix"):
        run("api_keys", "revoke", "acme-corp", "AbCdEf12")
