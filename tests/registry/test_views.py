"""The active_models and model_leaderboard SQL views, and the selectors that read them."""

from decimal import Decimal

import pytest

from flywheel.models import Organization
from registry.models import ActiveModel, LeaderboardEntry, RegisteredModel
from registry.selectors import active_models, leaderboard
from registry.services import model_deploy, model_performance_update
from tests.registry.factories import OrganizationFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db
Status = RegisteredModel.Status


def model(
    organization: Organization | None, version: str, sent: int, replies: int, deals: int, revenue: int = 0
) -> RegisteredModel:
    registered = RegisteredModelFactory.create(organization=organization, model_version=version)
    return model_performance_update(
        model=registered, messages_sent=sent, replies=replies, deals_closed=deals, revenue=revenue
    )


@pytest.fixture
def pools(organization: Organization) -> None:
    """Known data: four models of one organization (with a tie on close rate) and two global ones."""
    model(organization, "v1.0.0", sent=100, replies=10, deals=5, revenue=5000)  # close 5 %, reply 10 %
    model(organization, "v2.0.0", sent=200, replies=30, deals=10, revenue=9000)  # close 5 %, reply 15 %
    model(organization, "v3.0.0", sent=50, replies=20, deals=1, revenue=20000)  # close 2 %, reply 40 %
    model(organization, "v4.0.0", sent=10, replies=5, deals=3, revenue=100)  # close 30 %, reply 50 %, few samples
    model(None, "v1.0.0", sent=1000, replies=100, deals=10, revenue=1)  # close 1 %
    model(None, "v2.0.0", sent=1000, replies=50, deals=20, revenue=2)  # close 2 %


def ranks(organization: Organization | None) -> dict[str, tuple[int, int, int]]:
    entries = (
        LeaderboardEntry.objects.filter(organization=organization)
        if organization
        else (LeaderboardEntry.objects.filter(organization__isnull=True))
    )
    return {e.model_version: (e.close_rate_rank, e.reply_rate_rank, e.revenue_rank) for e in entries}


def test_the_leaderboard_ranks_each_model_within_its_organization(organization: Organization, pools: None) -> None:
    assert ranks(organization) == {
        "v4.0.0": (1, 1, 4),
        "v1.0.0": (2, 4, 3),  # tied on close rate with v2.0.0: same rank, then a gap
        "v2.0.0": (2, 3, 2),
        "v3.0.0": (4, 2, 1),
    }


def test_global_models_are_ranked_among_global_ones_only(organization: Organization, pools: None) -> None:
    assert ranks(None) == {"v2.0.0": (1, 2, 1), "v1.0.0": (2, 1, 2)}


def test_the_leaderboard_carries_counters_and_rates(organization: Organization, pools: None) -> None:
    entry = LeaderboardEntry.objects.get(organization=organization, model_version="v2.0.0")

    assert (entry.total_messages_sent, entry.total_replies, entry.total_deals_closed) == (200, 30, 10)
    assert entry.total_revenue == Decimal("9000.00")
    assert (entry.reply_rate, entry.close_rate) == pytest.approx((0.15, 0.05))
    assert entry.status == Status.READY


def test_the_leaderboard_selector_requires_min_samples_and_orders_by_close_then_reply_then_revenue(
    organization: Organization, pools: None
) -> None:
    everyone = [e.model_version for e in leaderboard(organization=organization, min_samples=0)]
    seasoned = [e.model_version for e in leaderboard(organization=organization, min_samples=50)]

    assert everyone == ["v4.0.0", "v2.0.0", "v1.0.0", "v3.0.0"]
    assert seasoned == ["v2.0.0", "v1.0.0", "v3.0.0"]
    assert [e.model_version for e in leaderboard(organization=None, min_samples=1001)] == []


def test_ties_on_close_and_reply_rate_are_broken_by_revenue(organization: Organization) -> None:
    model(organization, "v1.0.0", sent=100, replies=10, deals=5, revenue=10)
    model(organization, "v2.0.0", sent=100, replies=10, deals=5, revenue=20)

    assert [e.model_version for e in leaderboard(organization=organization, min_samples=0)] == ["v2.0.0", "v1.0.0"]
    assert ranks(organization) == {"v1.0.0": (1, 1, 2), "v2.0.0": (1, 1, 1)}


def test_active_models_are_the_deployed_and_ready_ones(organization: Organization) -> None:
    deployed = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    model_deploy(model=deployed, traffic_percentage=100)
    RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    RegisteredModelFactory.create(organization=organization, model_version="v3.0.0", status=Status.FAILED)
    RegisteredModelFactory.create(organization=organization, model_version="v4.0.0", status=Status.ARCHIVED)
    RegisteredModelFactory.create(organization=organization, model_version="v5.0.0", status=Status.TRAINING)
    RegisteredModelFactory.create(organization=OrganizationFactory.create(), model_version="v6.0.0")

    rows = list(active_models(organization=organization))

    assert [(r.model_version, r.status, r.traffic_percentage) for r in rows] == [
        ("v1.0.0", "deployed", 100.0),
        ("v2.0.0", "ready", 0.0),
    ]
    assert rows[0].organization == organization
    assert rows[0].ab_test_group == "control"


def test_active_models_of_the_global_pool(organization: Organization) -> None:
    RegisteredModelFactory.create(model_version="v1.0.0")
    RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")

    assert [r.model_version for r in active_models(organization=None)] == ["v1.0.0"]
    assert ActiveModel.objects.count() == 2
