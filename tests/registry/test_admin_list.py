"""The registry's list and audit pages: the columns a person scans, written one way, pools by name."""

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from flywheel.models import Organization
from registry.models import RegisteredModel
from registry.services import model_deploy, model_performance_update, model_set_baseline
from tests.admin_pages import headers, results, row_of, visible
from tests.factories import OrganizationFactory
from tests.registry.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:registry_registeredmodel_changelist")
AUDIT = reverse("admin:registry_modelevent_changelist")
COLUMNS = ["version", "pool", "status", "traffic", "messages", "reply", "meeting", "close", "revenue", "reply vs base"]


def measured(model: RegisteredModel, *, sent: int, replies: int, deals: int, revenue: str) -> RegisteredModel:
    return model_performance_update(
        model=model,
        messages_sent=sent,
        replies=replies,
        meetings_booked=replies // 2,
        deals_closed=deals,
        revenue=revenue,
    )


@pytest.fixture
def pool() -> Organization:
    organization = OrganizationFactory.create(name="Acme Outbound")
    baseline = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    model_deploy(model=baseline, traffic_percentage=100)
    measured(baseline, sent=1000, replies=100, deals=4, revenue="12000")
    model_set_baseline(model=baseline)
    candidate = RegisteredModelFactory.create(organization=organization, model_version="v1.1.0")
    measured(candidate, sent=1250, replies=150, deals=5, revenue="1234567.5")
    return organization


def test_the_registry_list_shows_only_the_scanned_columns_under_short_headers(
    admin_client: Client, pool: Organization
) -> None:
    assert headers(admin_client.get(CHANGELIST).content.decode()) == COLUMNS


def test_the_registry_list_writes_rates_in_percent_revenue_in_dollars_and_the_change_against_the_baseline(
    admin_client: Client, pool: Organization
) -> None:
    html = admin_client.get(CHANGELIST).content.decode()
    assert row_of(html, "v1.1.0") == [
        "v1.1.0", "Acme Outbound", "Ready", "0 %", "1,250", "12 %", "6 %", "0.4 %", "$1,234,567.50", "+20 %"
    ]  # fmt: skip
    assert row_of(html, "v1.0.0")[3:] == ["100 %", "1,000", "10 %", "5 %", "0.4 %", "$12,000.00", "0 %"]


def test_the_registry_list_names_pools_and_never_prints_their_ids(admin_client: Client, pool: Organization) -> None:
    RegisteredModelFactory.create(organization=None, model_version="v0.9.0")
    html = admin_client.get(CHANGELIST).content.decode()
    assert row_of(html, "v0.9.0")[1] == "Global model"
    assert str(pool.pk) not in visible(results(html))


def test_the_registry_list_reads_the_same_number_of_queries_for_few_or_many_models(
    admin_client: Client, pool: Organization
) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(CHANGELIST).status_code == 200
        return len(captured)

    few = queries()
    for _ in range(6):
        other = OrganizationFactory.create()
        measured(RegisteredModelFactory.create(organization=other), sent=10, replies=1, deals=0, revenue="0")
    assert queries() == few  # the comparison with the baseline is stored, not read per row


def test_the_model_page_names_its_pool_and_writes_its_numbers_one_way(admin_client: Client, pool: Organization) -> None:
    model = RegisteredModel.objects.get(model_version="v1.1.0")
    html = admin_client.get(reverse("admin:registry_registeredmodel_change", args=[model.pk])).content.decode()
    assert "Acme Outbound" in html and "$1,234,567.50" in html and "+20 %" in html
    assert Decimal("1234567.50") == model.total_revenue


def test_the_audit_list_shows_when_what_which_model_pool_actor_traffic_and_reason(
    admin_client: Client, pool: Organization
) -> None:
    candidate = RegisteredModel.objects.get(model_version="v1.1.0")
    model_deploy(
        model=candidate, traffic_percentage=10, ab_test_group="variant_a", reason="Try the new version on a tenth"
    )
    html = admin_client.get(AUDIT).content.decode()
    assert headers(html) == ["created at", "action", "model", "pool", "actor", "traffic", "reason"]
    row = row_of(html, "Try the new version on a tenth")
    assert row[1:] == ["Deployed", "v1.1.0", "Acme Outbound", row[4], "0 % → 10 %", "Try the new version on a tenth"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row[0])
    assert str(pool.pk) not in visible(results(html))
