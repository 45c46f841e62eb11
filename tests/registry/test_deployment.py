"""Deploy, set traffic, A/B start, promote, archive and fail: the traffic they move and their audit rows."""

import pytest

from flywheel.errors import ApplicationError, Conflict
from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services import (
    dry_run,
    model_archive,
    model_deploy,
    model_mark_failed,
    model_promote,
    model_set_traffic,
    model_start_ab_test,
)
from tests.registry.factories import (
    OrganizationFactory,
    RegisteredModelFactory,
    UserFactory,
    assert_pool_invariant,
    pool_traffic,
)

pytestmark = pytest.mark.django_db
Status = RegisteredModel.Status


def batch_of(model: RegisteredModel) -> list[ModelEvent]:
    """The audit rows of the latest service call that touched ``model``."""
    latest = model.events.order_by("-id").first()
    assert latest is not None
    return list(ModelEvent.objects.filter(batch=latest.batch).order_by("id"))


def test_the_first_deploy_takes_the_whole_pool_and_is_audited(organization: Organization) -> None:
    model = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    user = UserFactory.create()

    model_deploy(model=model, traffic_percentage=100, ab_test_group="control", actor=user, reason="first")

    model.refresh_from_db()
    assert (model.status, model.traffic_percentage, model.ab_test_group) == (Status.DEPLOYED, 100.0, "control")
    assert model.deployed_at is not None
    [event] = batch_of(model)
    assert (event.action, event.status_before, event.status_after) == ("deployed", "ready", "deployed")
    assert (event.traffic_before, event.traffic_after, event.pool_before) == (0.0, 100.0, {})
    assert (event.actor_user, event.reason, event.organization) == (user, "first", organization)


def test_the_first_deploy_below_100_percent_is_refused(organization: Organization) -> None:
    model = RegisteredModelFactory.create(organization=organization)

    with pytest.raises(ApplicationError, match="must take 100 %"):
        model_deploy(model=model, traffic_percentage=10)

    model.refresh_from_db()
    assert model.status == Status.READY
    assert model.events.count() == 0


def test_deploying_at_100_percent_archives_the_previously_deployed(
    organization: Organization, control: RegisteredModel
) -> None:
    new = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")

    model_deploy(model=new, traffic_percentage=100)

    assert pool_traffic(organization) == {"v2.0.0": 100.0}
    control.refresh_from_db()
    assert (control.status, control.traffic_percentage) == (Status.ARCHIVED, 0.0)
    archived, deployed = batch_of(new)
    assert (archived.model, archived.action, archived.traffic_before, archived.traffic_after) == (
        control,
        "archived",
        100.0,
        0.0,
    )
    assert "replaced by v2.0.0" in archived.reason
    assert deployed.model == new
    assert archived.pool_before == deployed.pool_before == {str(control.pk): [100.0, "control"]}


def test_deploying_beside_others_rescales_them_keeping_their_proportions(
    organization: Organization, control: RegisteredModel
) -> None:
    second = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    third = RegisteredModelFactory.create(organization=organization, model_version="v3.0.0")
    model_deploy(model=second, traffic_percentage=40, ab_test_group="variant_a")

    model_deploy(model=third, traffic_percentage=20, ab_test_group="variant_b")

    assert pool_traffic(organization) == {"v1.0.0": 48.0, "v2.0.0": 32.0, "v3.0.0": 20.0}
    assert {(e.model.model_version, e.action, e.traffic_before, e.traffic_after) for e in batch_of(third)} == {
        ("v1.0.0", "traffic_changed", 60.0, 48.0),
        ("v2.0.0", "traffic_changed", 40.0, 32.0),
        ("v3.0.0", "deployed", 0.0, 20.0),
    }


def test_a_three_way_split_is_stored_so_that_it_sums_exactly(organization: Organization) -> None:
    models = [RegisteredModelFactory.create(organization=organization, model_version=f"v{n}.0.0") for n in range(1, 4)]
    model_deploy(model=models[0], traffic_percentage=100)
    model_deploy(model=models[1], traffic_percentage=50)
    model_deploy(model=models[2], traffic_percentage=100 / 3)

    shares = pool_traffic(organization)

    # The rounding remainder went to one of the two equal largest shares.
    assert sorted(shares.values()) == [33.3333, 33.3333, 33.3334]
    assert_pool_invariant(organization)


@pytest.mark.parametrize(("status", "why"), [(Status.FAILED, "has failed"), (Status.ARCHIVED, "is archived")])
def test_a_failed_or_archived_model_cannot_be_deployed(organization: Organization, status: str, why: str) -> None:
    model = RegisteredModelFactory.create(organization=organization, status=status)

    with pytest.raises(Conflict, match=why):
        model_deploy(model=model, traffic_percentage=100)

    assert pool_traffic(organization) == {}


@pytest.mark.parametrize("percentage", [0, -5, 100.5, float("nan")])
def test_traffic_outside_0_to_100_is_refused(control: RegisteredModel, percentage: float) -> None:
    with pytest.raises(ApplicationError):
        model_set_traffic(model=control, traffic_percentage=percentage)


def test_an_unknown_ab_test_group_is_refused(organization: Organization) -> None:
    with pytest.raises(ApplicationError, match="A/B test group"):
        model_deploy(model=RegisteredModelFactory.create(organization=organization), ab_test_group="treatment")


def test_deploying_again_with_nothing_to_change_is_refused(control: RegisteredModel) -> None:
    with pytest.raises(Conflict, match=r"already has 100\.0 %"):
        model_deploy(model=control, traffic_percentage=100, ab_test_group="control")


def test_setting_traffic_rescales_the_others(organization: Organization, control: RegisteredModel) -> None:
    variant = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    model_deploy(model=variant, traffic_percentage=10, ab_test_group="variant_a")

    model_set_traffic(model=variant, traffic_percentage=50, reason="ramp up")

    assert pool_traffic(organization) == {"v1.0.0": 50.0, "v2.0.0": 50.0}
    assert {(e.model.model_version, e.action, e.traffic_before, e.traffic_after) for e in batch_of(variant)} == {
        ("v1.0.0", "traffic_changed", 90.0, 50.0),
        ("v2.0.0", "traffic_changed", 10.0, 50.0),
    }


def test_the_only_deployed_model_cannot_go_below_100_percent(control: RegisteredModel) -> None:
    with pytest.raises(ApplicationError, match="must take 100 %"):
        model_set_traffic(model=control, traffic_percentage=60)

    control.refresh_from_db()
    assert control.traffic_percentage == 100.0


def test_setting_traffic_of_a_model_that_is_not_deployed_is_refused(organization: Organization) -> None:
    with pytest.raises(Conflict, match="deploy it first"):
        model_set_traffic(model=RegisteredModelFactory.create(organization=organization), traffic_percentage=50)


def test_setting_a_model_to_100_percent_archives_the_others(
    organization: Organization, control: RegisteredModel
) -> None:
    variant = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    model_deploy(model=variant, traffic_percentage=30)

    model_set_traffic(model=variant, traffic_percentage=100)

    assert pool_traffic(organization) == {"v2.0.0": 100.0}


def test_an_ab_test_puts_the_variant_at_n_percent_and_marks_the_deployed_as_control(
    organization: Organization, control: RegisteredModel
) -> None:
    model_deploy(model=control, traffic_percentage=100, ab_test_group="")
    variant = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")

    model_start_ab_test(variant=variant, variant_traffic=10)

    assert pool_traffic(organization) == {"v1.0.0": 90.0, "v2.0.0": 10.0}
    groups = dict(RegisteredModel.objects.deployed().values_list("model_version", "ab_test_group"))
    assert groups == {"v1.0.0": "control", "v2.0.0": "variant_a"}


def test_an_ab_test_needs_a_control_and_a_variant_that_is_not_deployed(
    organization: Organization, control: RegisteredModel
) -> None:
    lonely = RegisteredModelFactory.create(organization=OrganizationFactory.create())
    with pytest.raises(Conflict, match="no control"):
        model_start_ab_test(variant=lonely)
    with pytest.raises(Conflict, match="already deployed"):
        model_start_ab_test(variant=control)
    with pytest.raises(ApplicationError, match="below 100"):
        model_start_ab_test(variant=RegisteredModelFactory.create(organization=organization), variant_traffic=100)


def test_promoting_gives_the_winner_the_pool_as_the_new_control(
    organization: Organization, control: RegisteredModel
) -> None:
    variant = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    model_start_ab_test(variant=variant)

    model_promote(model=variant, reason="significant")

    variant.refresh_from_db()
    assert pool_traffic(organization) == {"v2.0.0": 100.0}
    assert variant.ab_test_group == "control"
    assert {e.action for e in batch_of(variant)} == {"promoted", "archived"}


def test_archiving_a_deployed_model_gives_its_share_to_the_others_proportionally(
    organization: Organization, control: RegisteredModel
) -> None:
    second = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    third = RegisteredModelFactory.create(organization=organization, model_version="v3.0.0")
    model_deploy(model=second, traffic_percentage=25)
    model_deploy(model=third, traffic_percentage=25)  # 56.25 / 18.75 / 25

    model_archive(model=third)

    assert pool_traffic(organization) == {"v1.0.0": 75.0, "v2.0.0": 25.0}
    assert_pool_invariant(organization)


def test_archiving_the_last_deployed_model_leaves_nothing_deployed_and_says_so(
    organization: Organization, control: RegisteredModel
) -> None:
    model_archive(model=control, reason="retired")

    assert pool_traffic(organization) == {}
    [event] = batch_of(control)
    assert (event.action, event.status_after, event.traffic_after) == ("archived", "archived", 0.0)
    assert event.reason == "retired; the pool has no deployed model now"


def test_archiving_a_model_twice_is_refused(control: RegisteredModel) -> None:
    model_archive(model=control)

    with pytest.raises(Conflict, match="already archived"):
        model_archive(model=control)


def test_a_deployed_model_marked_failed_leaves_the_pool_with_its_error(
    organization: Organization, control: RegisteredModel
) -> None:
    second = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    model_deploy(model=second, traffic_percentage=20)

    model_mark_failed(model=second, error="the provider deleted the model")

    second.refresh_from_db()
    assert (second.status, second.error, second.traffic_percentage) == (
        Status.FAILED,
        "the provider deleted the model",
        0,
    )
    assert pool_traffic(organization) == {"v1.0.0": 100.0}


def test_moving_traffic_bumps_the_routing_version_of_that_organization_only(organization: Organization) -> None:
    other = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=organization)

    model_deploy(model=model, traffic_percentage=100)

    assert model.organization is not None
    assert model.organization.routing_version == 1  # the caller's object was refreshed
    other.refresh_from_db()
    assert other.routing_version == 0


def test_moving_global_traffic_bumps_every_organization(organization: Organization) -> None:
    other = OrganizationFactory.create()

    model_deploy(model=RegisteredModelFactory.create(), traffic_percentage=100)

    assert [o.routing_version for o in Organization.objects.filter(pk__in=[organization.pk, other.pk])] == [1, 1]


def test_archiving_a_ready_model_moves_no_traffic(organization: Organization) -> None:
    model = RegisteredModelFactory.create(organization=organization)

    model_archive(model=model)

    organization.refresh_from_db()
    assert organization.routing_version == 0


def test_a_dry_run_returns_the_audit_rows_and_changes_nothing(
    organization: Organization, control: RegisteredModel
) -> None:
    variant = RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
    events_before = ModelEvent.objects.count()

    events = dry_run(lambda: model_start_ab_test(variant=variant, variant_traffic=20))

    assert {(e.model.model_version, e.traffic_before, e.traffic_after) for e in events} == {
        ("v1.0.0", 100.0, 80.0),
        ("v2.0.0", 0.0, 20.0),
    }
    assert pool_traffic(organization) == {"v1.0.0": 100.0}
    assert ModelEvent.objects.count() == events_before
