"""The leaderboard as people read it: ranks after filtering, archived models on request, intervals, 400s.

The ``model_leaderboard`` view now ranks per pool by ``organization_id``; a test checks it gives
the ranks of the query it replaced, on every pool at once.
"""

from collections.abc import Iterable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from flywheel.models import Organization
from registry.models import LeaderboardEntry, RegisteredModel
from registry.selectors import LEADERBOARD_MIN_SAMPLES, leaderboard, wilson_interval
from registry.services import model_archive, model_performance_update
from tests.api_clients import Tenant, assert_error
from tests.registry.factories import OrganizationFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db
LEADERBOARD = reverse("admin:registry_registeredmodel_leaderboard")
OLD_VIEW = """
SELECT id,
       RANK() OVER (PARTITION BY COALESCE(CAST(organization_id AS TEXT), 'global') ORDER BY close_rate DESC),
       RANK() OVER (PARTITION BY COALESCE(CAST(organization_id AS TEXT), 'global') ORDER BY reply_rate DESC),
       RANK() OVER (PARTITION BY COALESCE(CAST(organization_id AS TEXT), 'global') ORDER BY total_revenue DESC)
FROM model_registry
"""


def model(organization: Organization | None, version: str, sent: int, deals: int, replies: int = 0) -> RegisteredModel:
    registered = RegisteredModelFactory.create(organization=organization, model_version=version)
    model_performance_update(model=registered, messages_sent=sent, replies=replies, deals_closed=deals, revenue=deals)
    return registered


def close_ranks(entries: Iterable[Any]) -> list[tuple[str, int]]:
    """Each listed model's version and close-rate rank (an annotation the selector adds)."""
    return [(entry.model_version, entry.close_rate_rank) for entry in entries]


def test_the_per_pool_view_gives_the_ranks_of_the_query_it_replaced() -> None:
    for n in range(3):
        organization = OrganizationFactory.create()
        for m in range(4):
            model(organization, f"v{m}.0.0", sent=100, deals=(m * 7 + n) % 5, replies=(m * 3) % 4)
    for m in range(3):
        model(None, f"v{m}.0.0", sent=100, deals=m % 2, replies=m)

    with connection.cursor() as cursor:
        cursor.execute(OLD_VIEW)
        old = {str(row[0]).replace("-", ""): tuple(row[1:]) for row in cursor.fetchall()}
    new = LeaderboardEntry.objects.values_list("id", "close_rate_rank", "reply_rate_rank", "revenue_rank")
    assert {row[0].hex: tuple(row[1:]) for row in new} == old
    assert len(old) == 15


def test_ranks_are_computed_after_the_minimum_so_the_top_row_is_rank_1(organization: Organization) -> None:
    model(organization, "v1.0.0", sent=10, deals=5)  # the best rate, too few messages
    model(organization, "v2.0.0", sent=200, deals=10)
    model(organization, "v3.0.0", sent=200, deals=4)

    rows = close_ranks(leaderboard(organization=organization, min_samples=100))

    assert rows == [("v2.0.0", 1), ("v3.0.0", 2)]


def test_archived_models_are_left_out_unless_asked_for(organization: Organization) -> None:
    archived = model(organization, "v1.0.0", sent=200, deals=50)
    model_archive(model=archived)
    model(organization, "v2.0.0", sent=200, deals=10)

    assert [e.model_version for e in leaderboard(organization=organization)] == ["v2.0.0"]
    every = leaderboard(organization=organization, include_archived=True)
    assert close_ranks(every) == [("v1.0.0", 1), ("v2.0.0", 2)]


def test_the_api_gives_wilson_intervals_and_the_same_default_minimum_as_the_admin(tenant: Tenant) -> None:
    model(tenant.organization, "v1.0.0", sent=LEADERBOARD_MIN_SAMPLES, deals=10, replies=20)
    model(tenant.organization, "v2.0.0", sent=LEADERBOARD_MIN_SAMPLES - 1, deals=10)

    body = tenant.ops.get("/training/leaderboard").json()

    assert body["total"] == 1
    entry = body["leaderboard"][0]
    assert (entry["model_version"], entry["close_rate"], entry["close_rate_rank"]) == ("v1.0.0", 0.1, 1)
    low, high = entry["close_rate_interval"]
    assert (low, high) == pytest.approx((0.0552, 0.1744), abs=1e-4)
    assert entry["reply_rate_interval"][0] < 0.2 < entry["reply_rate_interval"][1]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_a_bad_min_samples_answers_400_in_the_api_and_the_admin(
    tenant: Tenant, admin_client: Client, value: str
) -> None:
    assert_error(tenant.ops.get("/training/leaderboard", {"min_samples": value}), 400)
    assert admin_client.get(LEADERBOARD, {"pool": "global", "min_samples": value}).status_code == 400


def test_the_api_includes_archived_models_when_asked(tenant: Tenant) -> None:
    model_archive(model=model(tenant.organization, "v1.0.0", sent=200, deals=5))
    assert tenant.ops.get("/training/leaderboard").json()["total"] == 0
    assert tenant.ops.get("/training/leaderboard", {"include_archived": "true"}).json()["total"] == 1


def test_the_admin_page_opens_on_a_picker_of_pools_with_models_not_an_empty_global_pool(
    admin_client: Client, organization: Organization
) -> None:
    model(organization, "v1.0.0", sent=200, deals=5)

    page = admin_client.get(LEADERBOARD)

    assert page.status_code == 200
    assert [p["name"] for p in page.context["pools"]] == [str(organization)]
    assert "Choose a pool" in page.content.decode() and "entries" not in page.context


def test_the_admin_page_shows_percentages_with_intervals_and_marks_too_few_messages(
    admin_client: Client, organization: Organization
) -> None:
    model(organization, "v1.0.0", sent=200, deals=20)
    model(organization, "v2.0.0", sent=5, deals=1)

    html = admin_client.get(LEADERBOARD, {"pool": str(organization.pk)}).content.decode()

    assert "10 %" in html and "6.6 to 14.9 %" in html
    assert "too few messages" in html and "v2.0.0" in html


def test_the_wilson_interval_is_none_without_trials_and_stays_within_0_and_1() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 10) or (None, None)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
