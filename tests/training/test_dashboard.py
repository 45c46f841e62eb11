"""The admin's home is a dashboard: a pool's flywheel week by week, its versions, test, runs and provider."""

import datetime
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from flywheel.models import Organization
from registry.models import RegisteredModel
from registry.services import model_deploy
from registry.services.rollback import model_rollback
from tests.experiments.experiment_data import send, start
from tests.factories import OrganizationFactory, UserFactory
from tests.outcomes.factories import OutcomeLabelFactory, reached
from tests.registry.factories import RegisteredModelFactory
from tests.training.factories import TrainingRunFactory
from training.schedules import training_schedules_ensure

pytestmark = pytest.mark.django_db

CHART_JS = "flywheel/vendor/chart.js-4.6.1/chart.umd.min.js"
PANELS = ["flywheel", "versions", "experiment", "schedules", "runs", "provider"]


def staff(client: Client, *permissions: str, superuser: bool = False) -> Client:
    """``client`` signed in as staff holding exactly ``permissions`` (``app_label.codename``), or as a superuser."""
    user = UserFactory.create(is_staff=True, is_superuser=superuser)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client.force_login(user)
    return client


def page(client: Client, query: str = "") -> str:
    response = client.get("/admin/" + query)
    assert response.status_code == 200
    return response.content.decode()


def chart_data(html: str, name: str) -> Any:
    found = re.search(rf'<script id="dashboard-{name}" type="application/json">(.*?)</script>', html, re.S)
    assert found, f"no {name} data on the page"
    return json.loads(found.group(1))


def monday(weeks_back: int) -> datetime.datetime:
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    return today - datetime.timedelta(days=today.weekday(), weeks=weeks_back)


@pytest.fixture
def pool() -> Organization:
    """A pool with two versions: six messages four weeks ago (one eligible), one this week."""
    organization = OrganizationFactory.create(name="Acme Sales")
    v1 = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    v2 = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    sent = monday(4) + datetime.timedelta(days=1, hours=12)
    for stages, model, excluded in [
        ("replied meeting_booked deal_closed", v1, False),  # quality 1.0: eligible
        ("replied meeting_booked", v1, False),  # 0.5: below the 0.6 threshold
        ("replied", v1, False),
        ("", v1, False),
        ("replied meeting_booked deal_closed", v2, True),  # excluded by a reviewer: not eligible
        ("", v2, False),
    ]:
        stage_times = reached(stages, at=sent + datetime.timedelta(hours=1)) if stages else {}
        OutcomeLabelFactory.create(
            organization=organization, model=model, sent_at=sent, excluded_from_training=excluded, **stage_times
        )
    OutcomeLabelFactory.create(organization=organization, model=v1, sent_at=timezone.now())
    OutcomeLabelFactory.create(organization=organization, model=v1, sent_at=monday(20))  # before the window
    OutcomeLabelFactory.create(sent_at=sent - datetime.timedelta(days=1), **reached("replied"))  # another pool
    return organization


def test_the_flywheel_series_hold_the_weekly_aggregates_of_the_pool(client: Client, pool: Organization) -> None:
    series = chart_data(page(staff(client, superuser=True), f"?pool={pool.slug}"), "flywheel")
    assert len(series["weeks"]) == 12 and series["weeks"][-1] == monday(0).date().isoformat()
    week = series["weeks"].index(monday(4).date().isoformat())
    assert series["labels"][week] == 6 and series["eligible"][week] == 1
    assert series["labels"][-1] == 1 and sum(series["labels"]) == 7
    assert series["provisional"][week] is False and series["provisional"][-1] is True
    rates = {version["version"]: version for version in series["versions"]}
    assert rates["v1.0.0"]["messages"][week] == 4 and rates["v2.0.0"]["messages"][week] == 2
    assert rates["v1.0.0"]["reply_rate"][week] == 0.75 and rates["v1.0.0"]["meeting_rate"][week] == 0.5
    assert rates["v1.0.0"]["close_rate"][week] == 0.25
    assert rates["v2.0.0"]["reply_rate"][week] == 0.5 and rates["v2.0.0"]["reply_rate"][-1] is None


def test_without_a_choice_the_dashboard_opens_on_the_pool_that_sent_last(client: Client, pool: Organization) -> None:
    html = page(staff(client, superuser=True))
    assert "Acme Sales — the last 12 weeks" in html
    assert f'<option value="{pool.slug}" selected>Acme Sales</option>' in html


def test_the_global_pool_counts_every_organizations_labels(client: Client, pool: Organization) -> None:
    series = chart_data(page(staff(client, superuser=True), "?pool=global"), "flywheel")
    assert sum(series["labels"]) == 8


def test_the_versions_chart_follows_the_audit_and_marks_a_rollback(client: Client) -> None:
    organization = OrganizationFactory.create()
    old, new = (RegisteredModelFactory.create(organization=organization, model_version=v) for v in ("v1.0.0", "v1.1.0"))
    model_deploy(model=old, traffic_percentage=100)
    model_deploy(model=new, traffic_percentage=100)
    model_rollback(organization=organization, reason="worse replies")
    timeline = chart_data(page(staff(client, superuser=True), f"?pool={organization.slug}"), "versions")
    lines = {line["version"]: [point["y"] for point in line["points"]] for line in timeline["versions"]}
    assert lines["v1.0.0"][0] == 100 and lines["v1.0.0"][-1] == 100  # deployed, archived, restored: 100 today
    assert lines["v1.1.0"][-1] == 0
    assert sorted((mark["kind"], mark["version"], mark["y"]) for mark in timeline["marks"]) == [
        ("rolled_back", "v1.0.0", 100),
        ("rolled_back", "v1.1.0", 0),
    ]


def test_the_running_experiment_shows_its_arms_with_intervals(client: Client) -> None:
    organization = OrganizationFactory.create()
    control = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    model_deploy(model=control, traffic_percentage=100)
    variant = RegisteredModelFactory.create(organization=organization, model_version="v1.1.0")
    experiment = start(variant, look=1)
    send(control, 20, at=experiment.started_at + datetime.timedelta(days=1), replies=4)
    send(variant, 20, at=experiment.started_at + datetime.timedelta(days=1), replies=6)
    html = page(staff(client, superuser=True), f"?pool={organization.slug}")
    assert "v1.1.0 against v1.0.0</a>" in html
    assert "20 % (" in html and "30 % (" in html  # the rates with their 95 % intervals
    assert "50 % of leads on the variant" in html and "provisional" in html


def test_runs_show_their_cost_to_date_and_schedules_their_next_time(client: Client) -> None:
    organization = OrganizationFactory.create()
    TrainingRunFactory.create(
        status="succeeded", organization=organization, estimated_cost=Decimal("1234.50"), model_version="v1.0.0"
    )
    TrainingRunFactory.create(status="succeeded", organization=organization, estimated_cost=Decimal("2.25"))
    TrainingRunFactory.create(status="succeeded", organization=None, estimated_cost=Decimal("99"))  # the global pool's
    training_schedules_ensure(include_global=False, organizations=[organization])
    html = page(staff(client, superuser=True), f"?pool={organization.slug}")
    assert "2 runs in this pool, estimated cost to date <strong>$1,236.75</strong>" in html
    assert "$1,234.50" in html and f"training: weekly ({organization.slug})" in html


def test_a_pool_on_openai_shows_the_wind_down_dates(client: Client) -> None:
    organization = OrganizationFactory.create(training_provider="openai")
    html = page(staff(client, superuser=True), f"?pool={organization.slug}")
    assert "trains on <strong>openai</strong>" in html
    assert "2027-01-06" in html and "2027-01-14" in html


def test_staff_without_permissions_see_no_panel_but_the_page(client: Client, pool: Organization) -> None:
    html = page(staff(client))
    assert not [panel for panel in PANELS if f'id="panel-{panel}"' in html]
    assert "dashboard-flywheel" not in html


def test_each_panel_needs_the_view_permission_of_its_model(client: Client, pool: Organization) -> None:
    html = page(staff(client, "outcomes.view_outcomelabel", "training.view_trainingrun"))
    assert [panel for panel in PANELS if f'id="panel-{panel}"' in html] == ["flywheel", "runs"]


def test_a_user_who_is_not_staff_is_sent_to_the_login_page(client: Client, pool: Organization) -> None:
    client.force_login(UserFactory.create(is_staff=False))
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_view_site_leads_to_the_api_documentation_not_a_404(client: Client) -> None:
    assert '<a href="/api/docs/">View site</a>' in page(staff(client, superuser=True))


def test_the_page_loads_its_scripts_and_styles_from_flywheel_only(client: Client, pool: Organization) -> None:
    html = page(staff(client, superuser=True))
    tags = re.findall(r"<(?:script|link)\b[^>]*>", html)
    sources = [re.search(r'(?:src|href)="([^"]+)"', tag) for tag in tags]
    assert f'src="/static/{CHART_JS}"' in html
    assert all(source.group(1).startswith("/static/") for source in sources if source)
    assert not [tag for tag in tags if "http://" in tag or "https://" in tag]


def test_chart_js_is_served_from_static_and_matches_its_recorded_checksum(settings: Any, client: Client) -> None:
    settings.WHITENOISE_USE_FINDERS = True  # read by the middleware when this client makes its first request
    response = client.get("/static/" + CHART_JS)
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]
    assert body.startswith(b"/*!\n * Chart.js v4.6.1")
    folder = Path(__file__).resolve().parents[2] / "flywheel/static" / Path(CHART_JS).parent
    recorded = {
        name: digest for digest, name in (line.split() for line in (folder / "SHA256SUMS").read_text().splitlines())
    }
    assert hashlib.sha256(body).hexdigest() == recorded["chart.umd.min.js"]
    assert (folder / "LICENSE.md").read_text().startswith("The MIT License")


def _grow(organization: Organization) -> None:
    """Much more of everything: labels over every week, more versions, audit rows, runs and schedules."""
    models = [RegisteredModelFactory.create(organization=organization) for _ in range(4)]
    for model in models:
        model_deploy(model=model, traffic_percentage=100)
    for week in range(14):
        for model in models:
            send(model, 3, at=monday(week) + datetime.timedelta(hours=3), replies=1)
    for _ in range(8):
        TrainingRunFactory.create(status="succeeded", organization=organization, estimated_cost=Decimal("1"))
    training_schedules_ensure(include_global=True, organizations=list(Organization.objects.all()))


def test_the_queries_do_not_grow_with_the_data(client: Client, pool: Organization) -> None:
    staff(client, superuser=True)
    with CaptureQueriesContext(connection) as small:
        page(client, f"?pool={pool.slug}")
    _grow(pool)
    with CaptureQueriesContext(connection) as large:
        html = page(client, f"?pool={pool.slug}")
    assert sum(chart_data(html, "flywheel")["labels"]) > 100
    assert len(large) == len(small) and len(small) <= 25


def test_the_admin_app_list_stays_below_the_dashboard(client: Client) -> None:
    html = page(staff(client, superuser=True))
    assert html.index('id="flywheel-dashboard"') < html.index('id="content-main"') < html.index('class="app-registry')
    assert f'href="/admin/registry/{RegisteredModel._meta.model_name}/"' in html
