"""Every admin list shows the few columns a person scans, written one way, with pools by name."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from experiments.services import experiment_start
from flywheel.models import Organization
from registry.services import model_deploy
from tests.admin_pages import headers, results, row_of, visible
from tests.factories import OrganizationFactory, make_api_key
from tests.outcomes.factories import OutcomeLabelFactory
from tests.registry.factories import RegisteredModelFactory
from tests.training.factories import TrainingRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme() -> Organization:
    return OrganizationFactory.create(name="Acme Outbound")


def page(client: Client, name: str) -> str:
    response = client.get(reverse(f"admin:{name}_changelist"))
    assert response.status_code == 200
    return response.content.decode()


def test_the_labels_list_shows_quality_and_deal_value_with_the_pool_by_name(
    admin_client: Client, acme: Organization
) -> None:
    model = RegisteredModelFactory.create(organization=acme, model_version="v1.2.0")
    OutcomeLabelFactory.create(organization=acme, model=model, external_id="msg-1", deal_value=Decimal("48000"))
    html = page(admin_client, "outcomes_outcomelabel")
    assert headers(html) == ["external id", "pool", "model", "stage", "quality", "deal", "excluded", "sent at"]
    assert row_of(html, "msg-1")[:6] == ["msg-1", "Acme Outbound", "v1.2.0", "sent", "0.00", "$48,000.00"]
    assert str(acme.pk) not in visible(results(html))


def test_the_experiments_list_shows_the_variant_share_in_percent_and_the_pool_by_name(
    admin_client: Client, acme: Organization
) -> None:
    control = model_deploy(model=RegisteredModelFactory.create(organization=acme, model_version="v1.0.0"))
    variant = RegisteredModelFactory.create(organization=acme, model_version="v1.1.0")
    experiment_start(variant=variant, variant_traffic=10.0)
    html = page(admin_client, "experiments_experiment")
    assert headers(html) == ["test", "pool", "status", "variant share", "started at", "look", "last decision"]
    assert row_of(html, "v1.1.0 vs v1.0.0")[1:4] == ["Acme Outbound", "Running", "10 %"]
    assert control.model_version in html and str(acme.pk) not in visible(results(html))


def test_the_runs_list_shows_cost_with_its_currency_and_the_global_pool_by_name(admin_client: Client) -> None:
    TrainingRunFactory.create(organization=None, model_version="v3.0.0", estimated_cost=Decimal("1234.5678"))
    html = page(admin_client, "training_trainingrun")
    assert headers(html)[:8] == [
        "run",
        "pool",
        "status",
        "created at",
        "duration",
        "examples",
        "cost",
        "resulting model",
    ]
    row = row_of(html, "v3.0.0")
    assert row[1] == "Global model" and row[6] == "$1,234.57"


def test_the_organizations_and_keys_lists_show_names_not_ids(admin_client: Client, acme: Organization) -> None:
    make_api_key(acme)
    organizations = page(admin_client, "flywheel_organization")
    assert headers(organizations) == ["name", "slug", "created at", "provider", "provider notice"]
    assert str(acme.pk) not in visible(results(organizations))
    keys = page(admin_client, "flywheel_organizationapikey")
    assert headers(keys)[:3] == ["name", "organization", "role"]
    assert "Acme Outbound" in results(keys) and str(acme.pk) not in visible(results(keys))
