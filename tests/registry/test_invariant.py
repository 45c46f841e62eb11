"""The traffic invariant: after every service, a pool's deployed traffic sums to 100 or nothing is deployed.

Checked after each step of seeded random sequences of services, and under concurrent writers
on PostgreSQL (threads with their own connections, so the row locks are really contended).
"""

import random
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import pytest
from django.db import connection

from flywheel.errors import ApplicationError
from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services import (
    model_archive,
    model_deploy,
    model_mark_failed,
    model_promote,
    model_rollback,
    model_set_traffic,
    model_start_ab_test,
)
from tests.concurrency import errors_of, run_at_once
from tests.registry.factories import OrganizationFactory, RegisteredModelFactory, assert_pool_invariant

Status = RegisteredModel.Status
T = TypeVar("T", bound=Callable[..., None])


def postgres_only(test: T) -> T:
    """Run ``test`` on PostgreSQL only, with real transactions that other connections can see."""
    test = pytest.mark.django_db(transaction=True)(test)
    test = pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no row locks to contend for")(test)
    return pytest.mark.postgres_only(test)


def random_operation(rng: random.Random, organization: Organization | None) -> Callable[[], object]:
    """One service call on a random model of the pool, with random arguments."""
    organization_id = organization.pk if organization else None
    models = list(RegisteredModel.objects.in_pool(organization_id).order_by("model_version"))
    model = rng.choice(models)
    share = rng.choice([100.0, rng.uniform(0.5, 99.5), float(rng.randint(1, 99))])
    operations: list[Callable[[], object]] = [
        lambda: model_deploy(model=model, traffic_percentage=share, ab_test_group=rng.choice(["control", "variant_a"])),
        lambda: model_set_traffic(model=model, traffic_percentage=share),
        lambda: model_start_ab_test(variant=model, variant_traffic=min(share, 50.0)),
        lambda: model_promote(model=model),
        lambda: model_archive(model=model),
        lambda: model_mark_failed(model=model, error="random failure"),
        lambda: model_rollback(organization=organization),
        lambda: RegisteredModelFactory.create(organization=organization),
    ]
    return rng.choices(operations, weights=[6, 5, 3, 1, 2, 1, 3, 2])[0]


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(6))
def test_the_invariant_holds_after_every_step_of_a_random_sequence(seed: int) -> None:
    rng = random.Random(seed)
    pools: list[Organization | None] = [OrganizationFactory.create(), None]
    for pool in pools:
        RegisteredModelFactory.create_batch(5, organization=pool)
    succeeded = 0

    for _ in range(150):
        pool = rng.choice(pools)
        try:
            operation = random_operation(rng, pool)
            operation()
            succeeded += 1
        except ApplicationError:
            pass  # a refusal is an answer too; it must leave the pool whole
        for checked in pools:
            assert_pool_invariant(checked)

    assert succeeded > 40  # enough of the steps really changed something
    assert ModelEvent.objects.filter(action="rolled_back").exists()


@postgres_only
def test_concurrent_deploys_beside_a_control_keep_the_sum_at_100() -> None:
    organization = OrganizationFactory.create()
    model_deploy(model=RegisteredModelFactory.create(organization=organization), traffic_percentage=100)
    variants = RegisteredModelFactory.create_batch(8, organization=organization)

    errors = errors_of(
        run_at_once([partial(model_deploy, model=m, traffic_percentage=5 + n) for n, m in enumerate(variants)])
    )

    assert errors == []
    assert RegisteredModel.objects.deployed().count() == 9
    assert_pool_invariant(organization)


@pytest.mark.parametrize("organization_factory", [OrganizationFactory, lambda: None], ids=["organization", "global"])
@postgres_only
def test_concurrent_first_deploys_into_an_empty_pool_leave_exactly_one_deployed(
    organization_factory: Callable[[], Organization | None],
) -> None:
    organization = organization_factory()
    candidates = RegisteredModelFactory.create_batch(8, organization=organization)

    errors = errors_of(run_at_once([partial(model_deploy, model=m, traffic_percentage=100) for m in candidates]))

    assert errors == []
    organization_id = organization.pk if organization else None
    assert RegisteredModel.objects.in_pool(organization_id).deployed().count() == 1
    assert RegisteredModel.objects.in_pool(organization_id).filter(status=Status.ARCHIVED).count() == 7
    assert_pool_invariant(organization)


@postgres_only
def test_concurrent_mixed_services_keep_the_invariant() -> None:
    organization = OrganizationFactory.create()
    models = RegisteredModelFactory.create_batch(6, organization=organization)
    model_deploy(model=models[0], traffic_percentage=100)
    model_deploy(model=models[1], traffic_percentage=30)
    calls: list[Callable[[], object]] = [
        lambda: model_deploy(model=models[2], traffic_percentage=25),
        lambda: model_set_traffic(model=models[1], traffic_percentage=60),
        lambda: model_archive(model=models[0]),
        lambda: model_start_ab_test(variant=models[3], variant_traffic=10),
        lambda: model_deploy(model=models[4], traffic_percentage=15),
        lambda: model_rollback(organization=organization),
    ]

    errors = errors_of(run_at_once(calls))

    assert all(isinstance(error, ApplicationError) for error in errors)
    assert_pool_invariant(organization)
