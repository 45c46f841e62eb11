"""model_rollback: the previous configuration comes back exactly, in one audited step."""

import pytest

from flywheel.errors import Conflict
from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services import (
    model_archive,
    model_deploy,
    model_mark_failed,
    model_rollback,
    model_set_traffic,
)
from tests.registry.factories import OrganizationFactory, RegisteredModelFactory, UserFactory, pool_traffic

pytestmark = pytest.mark.django_db
Status = RegisteredModel.Status


def configuration(organization: Organization | None) -> dict[str, tuple[str, float, str]]:
    """Every model of the pool as ``{version: (status, traffic, group)}``."""
    organization_id = organization.pk if organization else None
    rows = RegisteredModel.objects.in_pool(organization_id)
    return {
        v: (s, t, g)
        for v, s, t, g in rows.values_list("model_version", "status", "traffic_percentage", "ab_test_group")
    }


@pytest.fixture
def ab_test(organization: Organization) -> tuple[RegisteredModel, RegisteredModel]:
    """A 90/10 split. Not an A/B test: any later traffic change would end a test (and its variant group)."""
    control = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    variant = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    model_deploy(model=control, traffic_percentage=100)
    model_deploy(model=variant, traffic_percentage=10)
    return control, variant


def test_a_rollback_restores_the_configuration_before_the_last_step_exactly(
    organization: Organization, ab_test: tuple[RegisteredModel, RegisteredModel]
) -> None:
    _control, variant = ab_test
    before = configuration(organization)
    model_set_traffic(model=variant, traffic_percentage=35.5)

    model_rollback(organization=organization)

    assert configuration(organization) == before


def test_rolling_back_a_full_deploy_brings_back_the_archived_and_readies_the_new(
    organization: Organization, ab_test: tuple[RegisteredModel, RegisteredModel]
) -> None:
    before = configuration(organization)
    newest = RegisteredModelFactory.create(organization=organization, model_version="v3.0.0")
    model_deploy(model=newest, traffic_percentage=100)

    model_rollback(organization=organization)

    assert configuration(organization) == {**before, "v3.0.0": (Status.READY, 0.0, "")}


def test_a_rollback_writes_one_rolled_back_row_per_changed_model(
    organization: Organization, ab_test: tuple[RegisteredModel, RegisteredModel]
) -> None:
    control, variant = ab_test
    user = UserFactory.create()

    events = model_rollback(organization=organization, actor=user, reason="variant misbehaves")

    assert {(e.model_id, e.status_before, e.status_after, e.traffic_before, e.traffic_after) for e in events} == {
        (control.pk, "deployed", "deployed", 90.0, 100.0),
        (variant.pk, "deployed", "ready", 10.0, 0.0),
    }
    assert {e.action for e in events} == {"rolled_back"}
    assert len({e.batch for e in events}) == 1
    assert events[0].actor_user == user
    assert events[0].reason.startswith("variant misbehaves; undoes deployed of v2.0.0")


def test_a_second_rollback_undoes_the_first(
    organization: Organization, ab_test: tuple[RegisteredModel, RegisteredModel]
) -> None:
    during_test = configuration(organization)
    model_rollback(organization=organization)

    model_rollback(organization=organization)

    assert configuration(organization) == during_test


def test_rolling_back_the_first_deploy_leaves_nothing_deployed(organization: Organization) -> None:
    model = RegisteredModelFactory.create(organization=organization)
    model_deploy(model=model, traffic_percentage=100)

    model_rollback(organization=organization)

    assert pool_traffic(organization) == {}
    model.refresh_from_db()
    assert model.status == Status.READY


def test_rolling_back_an_archive_gives_the_model_its_share_back(
    organization: Organization, ab_test: tuple[RegisteredModel, RegisteredModel]
) -> None:
    _control, variant = ab_test
    model_archive(model=variant)

    model_rollback(organization=organization)

    assert pool_traffic(organization) == {"v1.0.0": 90.0, "v2.0.0": 10.0}


def test_a_rollback_that_would_redeploy_a_failed_model_is_refused(
    organization: Organization, ab_test: tuple[RegisteredModel, RegisteredModel]
) -> None:
    _control, variant = ab_test
    model_mark_failed(model=variant, error="broken")
    after_failure = configuration(organization)

    with pytest.raises(Conflict, match=r"v2\.0\.0 has failed since"):
        model_rollback(organization=organization)

    assert configuration(organization) == after_failure


def test_a_pool_without_traffic_changes_has_nothing_to_roll_back(organization: Organization) -> None:
    RegisteredModelFactory.create(organization=organization)

    with pytest.raises(Conflict, match="no traffic change to roll back"):
        model_rollback(organization=organization)


def test_a_rollback_only_touches_its_own_pool(
    organization: Organization, ab_test: tuple[RegisteredModel, RegisteredModel]
) -> None:
    model_deploy(model=RegisteredModelFactory.create(model_version="v7.0.0"), traffic_percentage=100)
    other = OrganizationFactory.create()
    model_deploy(model=RegisteredModelFactory.create(organization=other), traffic_percentage=100)

    model_rollback(organization=None)

    assert pool_traffic(None) == {}
    assert pool_traffic(organization) == {"v1.0.0": 90.0, "v2.0.0": 10.0}
    assert len(pool_traffic(other)) == 1


def test_a_rollback_bumps_the_routing_version_of_the_object_passed_in(
    organization: Organization, ab_test: tuple[RegisteredModel, RegisteredModel]
) -> None:
    version = Organization.objects.get(pk=organization.pk).routing_version

    model_rollback(organization=organization)

    assert organization.routing_version == version + 1
    assert ModelEvent.objects.filter(action="rolled_back").count() == 2
