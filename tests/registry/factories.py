"""Factories for registry tests; organizations and users come from the shared ``tests.factories``."""

import factory
from factory.django import DjangoModelFactory

from flywheel.models import Organization
from registry import traffic
from registry.models import RegisteredModel
from tests.factories import OrganizationFactory, UserFactory

__all__ = ["OrganizationFactory", "RegisteredModelFactory", "UserFactory", "assert_pool_invariant", "pool_traffic"]


class RegisteredModelFactory(DjangoModelFactory[RegisteredModel]):
    """A ready model in the global pool unless told otherwise; deploy it through the services."""

    class Meta:
        model = RegisteredModel

    model_id = factory.Sequence(lambda n: f"ft:gpt-4o-2024-08-06:acme:v{n}:abc{n}")
    model_version = factory.Sequence(lambda n: f"v1.{n}.0")
    base_model = "gpt-4o-2024-08-06"
    status = RegisteredModel.Status.READY
    provider = "local"


def pool_traffic(organization: Organization | None) -> dict[str, float]:
    """The pool's deployed models as ``{version: traffic}``, read fresh from the database."""
    organization_id = organization.pk if organization is not None else None
    rows = RegisteredModel.objects.in_pool(organization_id).deployed()
    return dict(rows.values_list("model_version", "traffic_percentage"))


def assert_pool_invariant(organization: Organization | None) -> None:
    """Nothing deployed, or the deployed traffic sums to 100 within the tolerance."""
    shares = pool_traffic(organization)
    assert traffic.is_complete(shares), f"traffic sums to {sum(shares.values())}: {shares}"
