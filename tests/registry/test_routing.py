"""choose_model: weighted, sticky per lead, cached per organization, falling back to the global pool."""

from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from flywheel.models import Organization
from registry.models import RegisteredModel
from registry.routing import BUCKETS, NoModelDeployed, bucket_of, build_table, choose_model
from registry.services import model_archive, model_deploy, model_start_ab_test
from tests.registry.factories import OrganizationFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def split(organization: Organization) -> tuple[RegisteredModel, RegisteredModel]:
    """A 90/10 A/B test in the organization's pool."""
    control = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    variant = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    model_deploy(model=control, traffic_percentage=100)
    model_start_ab_test(variant=variant, variant_traffic=10)
    organization.refresh_from_db()
    return control, variant


def test_100000_leads_follow_a_90_10_split_within_one_point(
    organization: Organization, split: tuple[RegisteredModel, RegisteredModel]
) -> None:
    control, variant = split

    counts = Counter(choose_model(organization, f"lead-{n}@example.com").pk for n in range(100_000))

    assert counts[control.pk] + counts[variant.pk] == 100_000
    assert abs(counts[variant.pk] / 1000 - 10.0) <= 1.0


def test_the_same_lead_always_gets_the_same_model(
    organization: Organization, split: tuple[RegisteredModel, RegisteredModel]
) -> None:
    first = {n: choose_model(organization, f"lead-{n}").pk for n in range(500)}

    assert all(choose_model(organization, f"lead-{n}").pk == pk for n, pk in first.items())


def test_buckets_are_stable_numbers_from_the_pool_and_the_lead() -> None:
    assert bucket_of("global", "lead-1") == bucket_of("global", "lead-1")
    assert 0 <= bucket_of("global", "lead-1") < BUCKETS
    assert len({bucket_of("global", f"lead-{n}") for n in range(1000)}) > 900


def test_a_lead_keeps_its_model_when_a_new_variant_takes_traffic_from_another(organization: Organization) -> None:
    first = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    model_deploy(model=first, traffic_percentage=100)
    organization.refresh_from_db()
    before = {n: choose_model(organization, f"lead-{n}") for n in range(2000)}

    model_start_ab_test(variant=RegisteredModelFactory.create(organization=organization), variant_traffic=10)
    organization.refresh_from_db()

    moved = sum(choose_model(organization, f"lead-{n}").pk != model.pk for n, model in before.items())
    assert 100 < moved < 300  # about the 10 % the variant took, not a reshuffle


def test_without_a_lead_key_the_split_still_holds(
    organization: Organization, split: tuple[RegisteredModel, RegisteredModel]
) -> None:
    _control, variant = split

    counts = Counter(choose_model(organization, None).pk for _ in range(20_000))

    assert abs(counts[variant.pk] / 200 - 10.0) <= 1.5


def test_a_warm_cache_answers_without_a_query(
    organization: Organization, split: tuple[RegisteredModel, RegisteredModel]
) -> None:
    choose_model(organization, "lead-1")

    with CaptureQueriesContext(connection) as queries:
        for n in range(100):
            choose_model(organization, f"lead-{n}")

    assert len(queries) == 0


def test_a_deploy_invalidates_the_cached_table(organization: Organization) -> None:
    old = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    model_deploy(model=old, traffic_percentage=100)
    organization.refresh_from_db()
    assert choose_model(organization, "lead-1") == old

    new = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    model_deploy(model=new, traffic_percentage=100)
    organization.refresh_from_db()

    assert choose_model(organization, "lead-1") == new


def test_a_stale_organization_object_keeps_its_cached_answer_until_refreshed(organization: Organization) -> None:
    old = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    model_deploy(model=old, traffic_percentage=100)
    organization.refresh_from_db()
    choose_model(organization, "lead-1")
    stale = Organization.objects.get(pk=organization.pk)

    model_deploy(model=RegisteredModelFactory.create(organization=organization), traffic_percentage=100)

    assert choose_model(stale, "lead-1") == old  # loaded before the deploy: the answer of that moment
    stale.refresh_from_db()
    assert choose_model(stale, "lead-1") != old


def test_an_organization_without_its_own_models_falls_back_to_the_global_pool(organization: Organization) -> None:
    global_model = RegisteredModelFactory.create(model_version="v1.0.0")
    model_deploy(model=global_model, traffic_percentage=100)
    organization.refresh_from_db()

    assert choose_model(organization, "lead-1") == global_model


def test_the_organization_pool_wins_over_the_global_one_and_the_fallback_returns_when_it_empties(
    organization: Organization,
) -> None:
    global_model = RegisteredModelFactory.create(model_version="v1.0.0")
    own = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    model_deploy(model=global_model, traffic_percentage=100)
    model_deploy(model=own, traffic_percentage=100)
    organization.refresh_from_db()
    assert choose_model(organization, "lead-1") == own

    model_archive(model=own)
    organization.refresh_from_db()

    assert choose_model(organization, "lead-1") == global_model


def test_a_global_deploy_reaches_every_organization_through_its_version() -> None:
    organization = OrganizationFactory.create()
    first = RegisteredModelFactory.create(model_version="v1.0.0")
    model_deploy(model=first, traffic_percentage=100)
    organization.refresh_from_db()
    assert choose_model(organization, "lead-1") == first

    second = RegisteredModelFactory.create(model_version="v2.0.0")
    model_deploy(model=second, traffic_percentage=100)
    organization.refresh_from_db()

    assert choose_model(organization, "lead-1") == second


def test_nothing_deployed_anywhere_is_a_clear_error(organization: Organization) -> None:
    RegisteredModelFactory.create(organization=organization)

    with pytest.raises(NoModelDeployed, match=f"No model is deployed for {organization.slug}, nor in the global pool"):
        choose_model(organization, "lead-1")


def test_the_last_model_covers_every_bucket_even_when_shares_sum_a_hair_under_100() -> None:
    models = [RegisteredModel(traffic_percentage=share) for share in (33.3333, 33.3333, 33.3333)]

    table = build_table("global", models)

    assert table is not None
    assert table.pick(BUCKETS - 1) is models[-1]
    assert table.bounds[-1] == BUCKETS
