"""Each pool trains on its own provider: the organization's choice, else the setting; KTO only where supported."""

from typing import Any

import pytest

from flywheel.errors import Conflict
from flywheel.models import Organization
from tests.api_clients import Tenant, assert_error
from tests.factories import OrganizationFactory
from tests.training.fake_openai import FakeOpenAI
from tests.training.helpers import drive, make_labels
from training.models import TrainingRun
from training.providers.openai import FINE_TUNED_MODELS_SHUTDOWN, FINE_TUNING_JOBS_END
from training.selectors import pool_provider_name, provider_wind_down_notice
from training.services import training_run_start

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("run_settings")]

Status = TrainingRun.Status


def start(organization: Organization | None, **options: Any) -> TrainingRun:
    return training_run_start(organization=organization, triggered_by="command", actor=None, **options)


# --- Which provider a run trains on --------------------------------------------------------------


def test_a_run_trains_on_its_organizations_provider_rather_than_the_setting(
    organization: Organization, fake_openai: FakeOpenAI
) -> None:
    organization.training_provider = "openai"
    organization.save()
    make_labels(organization)

    run = drive(start(organization))

    assert run.status == Status.SUCCEEDED, run.error
    assert run.provider == "openai" and run.registered_model is not None
    assert run.registered_model.provider == "openai"
    assert len(fake_openai.requests_to("jobs.create")) == 1


def test_a_run_in_flight_keeps_its_provider_when_the_organization_changes_it(
    organization: Organization, fake_openai: FakeOpenAI
) -> None:
    organization.training_provider = "openai"
    organization.save()
    make_labels(organization)
    run = start(organization)

    organization.training_provider = "local"
    organization.save()
    run = drive(run)

    assert run.status == Status.SUCCEEDED, run.error
    assert run.provider == "openai" and len(fake_openai.requests_to("jobs.create")) == 1
    assert start(organization).provider == "local"  # the next run follows the new choice


def test_the_global_pool_trains_on_the_setting_whatever_organizations_chose(settings: Any) -> None:
    OrganizationFactory.create(training_provider="openai")
    settings.FINE_TUNING_PROVIDER = "local"

    assert start(None).provider == "local"
    assert pool_provider_name(organization=None) == "local"


def test_an_organization_without_a_choice_follows_the_setting(organization: Organization, settings: Any) -> None:
    settings.FINE_TUNING_PROVIDER = "openweights"
    assert pool_provider_name(organization=organization) == "openweights"


def test_a_pool_whose_provider_no_longer_exists_is_refused_with_a_409_not_a_crash(
    organization: Organization,
) -> None:
    organization.training_provider = "retired"
    organization.save()
    with pytest.raises(Conflict) as refused:
        start(organization)
    assert refused.value.code == "provider_unavailable" and "'retired'" in refused.value.message
    assert not TrainingRun.objects.exists()


# --- KTO and the pool's provider, through the API ------------------------------------------------


def test_kto_on_an_openai_pool_answers_400_saying_why_and_what_to_do(tenant: Tenant) -> None:
    tenant.organization.training_provider = "openai"
    tenant.organization.save()

    error = assert_error(tenant.ops.post("/training/run", {"method": "kto"}, format="json"), 400, "unsupported_method")

    assert "openai" in error["message"] and "'kto'" in error["message"] and "openweights" in error["message"]
    assert error["details"]["supported_methods"] == ["sft", "dpo"]
    assert error["details"]["providers_supporting"] == ["openweights"]
    assert not TrainingRun.objects.exists()


def test_kto_on_an_openweights_pool_is_accepted_and_the_run_says_its_provider(tenant: Tenant) -> None:
    tenant.organization.training_provider = "openweights"
    tenant.organization.save()

    response = tenant.ops.post("/training/run", {"method": "kto"}, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["method"], body["provider"], body["metrics"]) == ("kto", "openweights", {})
    assert TrainingRun.objects.get().provider == "openweights"


def test_the_seeds_request_still_starts_a_run_on_an_openai_pool(tenant: Tenant) -> None:
    tenant.organization.training_provider = "openai"
    tenant.organization.save()
    response = tenant.ops.post("/training/run", {"model_version": "v2.5.0"}, format="json")
    assert response.status_code == 202 and response.json()["method"] == "sft"


def test_a_local_run_answers_its_measured_metrics_and_no_loss(tenant: Tenant) -> None:
    make_labels(tenant.organization)
    run = drive(start(tenant.organization, validation_percent=20))

    body = tenant.ops.get(f"/training/runs/{run.pk}").json()

    metrics = body["metrics"]
    assert metrics["training_examples"] == run.examples_count == 10
    assert metrics["validation_prompts"] == run.validation_examples_count == 2
    assert 0 <= metrics["validation_prompts_in_trained_segment"] <= 2
    assert not any("loss" in name for name in metrics)


# --- OpenAI's wind-down --------------------------------------------------------------------------


def test_the_wind_down_notice_names_both_dates_for_openai_and_nothing_for_other_providers() -> None:
    notice = provider_wind_down_notice(provider="openai")
    assert FINE_TUNING_JOBS_END.isoformat() == "2027-01-06" and "2027-01-06" in notice
    assert FINE_TUNED_MODELS_SHUTDOWN.isoformat() == "2027-01-14" and "2027-01-14" in notice
    assert "gpt-4o" in notice and "gpt-4.1" in notice and "openweights" in notice
    assert provider_wind_down_notice(provider="openweights") == ""
    assert provider_wind_down_notice(provider="local") == ""
