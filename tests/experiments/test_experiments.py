"""A/B experiments on the database: starting one, its arm counts and looks, and applying its decision."""

import datetime
import functools
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from experiments.models import Experiment
from experiments.selectors import experiment_arm_counts, experiment_look
from experiments.services import (
    AUTO_PROMOTE_SCHEDULE,
    ensure_auto_promote_schedule,
    experiment_evaluate,
    experiment_start,
    experiments_auto_promote,
    model_deploy_or_start_test,
    promote_ab_test_winner,
    promotion_preview,
)
from experiments.stats import ArmCounts
from experiments.tasks import auto_promote_experiments
from flywheel.errors import Conflict, NotFound
from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services import model_archive, model_deploy
from tests.concurrency import run_at_once
from tests.experiments.experiment_data import in_first_week, send, start
from tests.registry.factories import (
    OrganizationFactory,
    RegisteredModelFactory,
    UserFactory,
    assert_pool_invariant,
    pool_traffic,
)

pytestmark = pytest.mark.django_db
Status = RegisteredModel.Status
DAY = datetime.timedelta(days=1)


@pytest.fixture
def variant(organization: Organization) -> RegisteredModel:
    return RegisteredModelFactory.create(organization=organization, model_version="v1.1.0")


def batch(model: RegisteredModel) -> list[ModelEvent]:
    """The model's latest traffic step (the audit rows of the test's end come after it)."""
    latest = model.events.exclude(action=ModelEvent.Action.TEST_ENDED).order_by("-id").first()
    assert latest is not None
    return list(ModelEvent.objects.filter(batch=latest.batch).order_by("id"))


# --- Starting -----------------------------------------------------------------------------------


def test_starting_an_ab_test_creates_its_experiment_with_the_planned_split(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = experiment_start(variant=variant)

    assert (experiment.control, experiment.variant, experiment.organization) == (control, variant, organization)
    assert (experiment.status, experiment.planned_variant_share, experiment.planned_looks) == ("running", 0.1, 8)
    assert experiment.pool == str(organization.pk)
    assert pool_traffic(organization) == {"v1.0.0": 90.0, "v1.1.0": 10.0}


def test_a_second_test_in_the_same_pool_is_refused_and_moves_nothing(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment_start(variant=variant)
    other = RegisteredModelFactory.create(organization=organization, model_version="v1.2.0")

    with pytest.raises(Conflict, match="already running"):
        experiment_start(variant=other)

    assert pool_traffic(organization) == {"v1.0.0": 90.0, "v1.1.0": 10.0}
    assert Experiment.objects.count() == 1


def test_a_pool_with_two_deployed_models_has_no_single_control_and_is_refused(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    second = RegisteredModelFactory.create(organization=organization, model_version="v0.9.0")
    model_deploy(model=second, traffic_percentage=50)

    with pytest.raises(Conflict, match="exactly one deployed control"):
        experiment_start(variant=variant)

    assert pool_traffic(organization) == {"v0.9.0": 50.0, "v1.0.0": 50.0}
    assert not Experiment.objects.exists()


def test_a_pool_with_nothing_deployed_cannot_start_a_test(variant: RegisteredModel) -> None:
    with pytest.raises(Conflict, match="no control"):
        experiment_start(variant=variant)

    assert not Experiment.objects.exists()


def test_deploying_a_new_model_as_a_variant_starts_its_experiment(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    deployed = model_deploy_or_start_test(
        model=variant, traffic_percentage=20, ab_test_group="variant_a", reason="try v1.1"
    )

    experiment = Experiment.objects.get()
    assert (experiment.control, experiment.variant, experiment.planned_variant_share) == (control, variant, 0.2)
    assert (deployed.status, deployed.traffic_percentage, deployed.ab_test_group) == ("deployed", 20.0, "variant_a")
    reason = variant.events.get().reason
    # The audit row states when the test can decide at the earliest: its second look, 14 + 14 days on.
    assert reason.startswith("try v1.1 (A/B test at 20 %: earliest possible decision ")


def test_other_deploys_start_no_experiment(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    model_deploy_or_start_test(model=variant, traffic_percentage=50)  # beside the control, but not a variant
    third = RegisteredModelFactory.create(organization=organization, model_version="v1.3.0")
    model_deploy_or_start_test(model=third, traffic_percentage=10, ab_test_group="variant_a")  # two deployed already

    assert not Experiment.objects.exists()
    assert pool_traffic(organization) == {"v1.0.0": 45.0, "v1.1.0": 45.0, "v1.3.0": 10.0}


def test_the_registrys_own_deploy_is_a_plain_traffic_change_without_an_experiment(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    model_deploy(model=variant, traffic_percentage=20, ab_test_group="variant_a")

    assert not Experiment.objects.exists()
    assert pool_traffic(organization) == {"v1.0.0": 80.0, "v1.1.0": 20.0}


def test_a_deploy_that_must_be_a_test_is_refused_when_it_cannot_be_one(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    model_deploy(
        model=RegisteredModelFactory.create(organization=organization, model_version="v0.9.0"), traffic_percentage=50
    )

    with pytest.raises(Conflict, match="exactly one deployed control"):
        model_deploy_or_start_test(model=variant, traffic_percentage=10, require_test=True)

    assert pool_traffic(organization) == {"v0.9.0": 50.0, "v1.0.0": 50.0}
    assert not Experiment.objects.exists()


# --- Looks and counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(("days", "look"), [(0, 0), (20, 0), (21, 1), (14 + 7 * 5 + 3, 5), (200, 8)])
def test_the_look_counts_whole_weeks_of_matured_messages_up_to_the_plan(
    control: RegisteredModel, variant: RegisteredModel, days: int, look: int
) -> None:
    experiment = experiment_start(variant=variant)

    assert experiment_look(experiment, now=experiment.started_at + days * DAY) == look


def test_arm_counts_include_only_matured_messages_sent_within_the_looks_weeks(
    control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=2)
    first_week = in_first_week(experiment)
    send(control, 3, at=first_week, replies=2, meetings=1, deals=1)
    send(variant, 2, at=first_week + 8 * DAY, replies=1, unsubscribes=1)
    send(control, 1, at=experiment.started_at - DAY, replies=1)  # before the test: not an arm's message
    send(variant, 1, at=timezone.now() - 10 * DAY, replies=1)  # after look 2's weeks: not matured
    send(variant, 1, at=timezone.now() - 2 * DAY)  # nor this one

    control_counts, variant_counts = experiment_arm_counts(experiment)

    def funnel(arm: ArmCounts) -> tuple[float, ...]:
        return (arm.messages, arm.replies, arm.meetings, arm.deals, arm.revenue, arm.unsubscribes, arm.lead_count)

    assert funnel(control_counts) == (3, 2, 1, 1, 1000.0, 0, 3)
    assert funnel(variant_counts) == (2, 1, 0, 0, 0.0, 1, 2)


def test_an_arm_without_messages_counts_zero(control: RegisteredModel, variant: RegisteredModel) -> None:
    experiment = start(variant, look=3)

    assert experiment_arm_counts(experiment) == (ArmCounts(0, 0, 0, 0), ArmCounts(0, 0, 0, 0))


def test_evaluating_records_one_entry_per_look_and_updates_it_in_place(
    control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=3)
    send(control, 20, at=in_first_week(experiment), replies=2)
    send(variant, 20, at=in_first_week(experiment), replies=3)

    experiment_evaluate(experiment)
    send(variant, 1, at=in_first_week(experiment), replies=1)  # a late arrival in the same look
    decision = experiment_evaluate(experiment)
    experiment_evaluate(experiment, now=timezone.now() + 7 * DAY)

    experiment.refresh_from_db()
    assert [(row["look"], row["variant_messages"]) for row in experiment.looks] == [(3, 21), (4, 21)]
    assert experiment.looks[0]["z"] == pytest.approx(decision.z)
    assert experiment.decision["look"] == 4


# --- Applying the decision ----------------------------------------------------------------------


def test_a_clear_winner_is_promoted_atomically_with_its_audit_rows(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment))
    send(variant, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)
    user = UserFactory.create()

    answer = promote_ab_test_winner(organization=organization, actor=user)

    assert (answer["winner"], answer["winner_id"], answer["action"]) == ("variant", str(variant.pk), "promoted")
    assert (answer["control_score"], answer["variant_score"]) == (0.0, 0.5)
    # 80 of the 160 planned leads at every look: half the information, a boundary of 2.538.
    assert answer["z"] >= answer["boundary"] == pytest.approx(2.538, abs=1e-3)
    assert pool_traffic(organization) == {"v1.1.0": 100.0}
    assert_pool_invariant(organization)
    control.refresh_from_db()
    assert control.status == Status.ARCHIVED
    assert {(e.model.model_version, e.action, e.actor_user) for e in batch(variant)} == {
        ("v1.0.0", "archived", user),
        ("v1.1.0", "promoted", user),
    }
    experiment.refresh_from_db()
    assert (experiment.status, experiment.winner, experiment.decision["promote"]) == ("decided", variant, True)
    assert experiment.ended_at is not None
    assert answer["experiment_status"] == "decided"


def test_a_losing_variant_is_archived_and_the_control_gets_everything_back(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)
    send(variant, 40, at=in_first_week(experiment))

    answer = promote_ab_test_winner(organization=organization)

    assert (answer["winner"], answer["winner_id"], answer["action"]) == ("control", str(control.pk), "rolled_back")
    assert answer["improvement_percentage"] == -100.0
    assert pool_traffic(organization) == {"v1.0.0": 100.0}
    variant.refresh_from_db()
    assert variant.status == Status.ARCHIVED
    assert variant.events.filter(action="archived", actor_label="system").exists()
    experiment.refresh_from_db()
    assert (experiment.status, experiment.winner) == ("decided", control)


def test_a_broken_split_stops_the_test_and_never_promotes(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=4)
    # Planned 50/50, observed 100/20: the sample-ratio check fails, whatever the variant shows.
    send(control, 100, at=in_first_week(experiment))
    send(variant, 20, at=in_first_week(experiment), replies=20, meetings=20, deals=20)

    answer = promote_ab_test_winner(organization=organization)

    assert (answer["action"], answer["winner"], answer["promote"], answer["stopped"]) == ("stopped", None, False, True)
    assert answer["srm_p_value"] < 0.001
    assert any("sample-ratio mismatch" in reason for reason in answer["reasons"])
    assert pool_traffic(organization) == {"v1.0.0": 100.0}
    experiment.refresh_from_db()
    assert (experiment.status, experiment.winner) == ("stopped", None)


def test_an_undecided_test_moves_nothing_and_says_how_many_messages_it_needs(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment), replies=4, meetings=1)
    send(variant, 40, at=in_first_week(experiment), replies=5, meetings=1)
    events_before = ModelEvent.objects.count()

    answer = promote_ab_test_winner(organization=organization)

    assert (answer["action"], answer["winner"], answer["winner_id"]) == ("none", None, None)
    assert answer["additional_messages_needed"] > 0
    assert any("not significant yet" in reason for reason in answer["reasons"])
    assert pool_traffic(organization) == {"v1.0.0": 50.0, "v1.1.0": 50.0}
    assert ModelEvent.objects.count() == events_before
    experiment.refresh_from_db()
    assert experiment.status == "running"
    assert [row["look"] for row in experiment.looks] == [4]


def test_no_decision_is_taken_at_the_first_look_however_large_the_difference(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=1)
    send(control, 40, at=in_first_week(experiment))
    send(variant, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)

    answer = promote_ab_test_winner(organization=organization)

    assert answer["action"] == "none"
    assert any("no decision before look 2" in reason for reason in answer["reasons"])


def test_a_variant_that_has_not_won_by_the_last_look_loses(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=8)
    send(control, 40, at=in_first_week(experiment), replies=4, meetings=1)
    send(variant, 40, at=in_first_week(experiment), replies=5, meetings=1)

    answer = promote_ab_test_winner(organization=organization)

    assert (answer["action"], answer["winner"]) == ("rolled_back", "control")
    assert answer["additional_messages_needed"] is None
    assert "planned information is reached" in answer["reasons"][-1]
    assert pool_traffic(organization) == {"v1.0.0": 100.0}


def test_a_test_whose_variant_left_the_pool_is_stopped_without_moving_traffic(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=4)
    model_archive(model=variant)

    answer = promote_ab_test_winner(organization=organization)

    assert (answer["action"], answer["winner"], answer["stopped"], answer["look"]) == ("stopped", None, True, 4)
    assert answer["reasons"] == ["v1.1.0 no longer deployed: the A/B test was ended outside the experiment"]
    assert pool_traffic(organization) == {"v1.0.0": 100.0}
    experiment.refresh_from_db()
    assert experiment.status == "stopped"


def test_a_pool_without_a_running_test_answers_not_found(organization: Organization) -> None:
    with pytest.raises(NotFound, match=f"No A/B test is running in organization {organization.slug}"):
        promote_ab_test_winner(organization=organization)
    with pytest.raises(NotFound, match="the global pool"):
        promote_ab_test_winner(organization=None)


def test_a_finished_test_cannot_be_evaluated_again(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment))
    send(variant, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)
    promote_ab_test_winner(organization=organization)

    with pytest.raises(Conflict, match="not running"):
        experiment_evaluate(experiment)
    with pytest.raises(NotFound):
        promote_ab_test_winner(organization=organization)


def test_a_preview_answers_as_applying_would_and_changes_nothing(
    organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment))
    send(variant, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)

    answer, events = promotion_preview(organization=organization)

    assert answer["action"] == "promoted"
    assert {(event.model_id, event.action) for event in events} == {
        (control.pk, "archived"),
        (variant.pk, "promoted"),
        (control.pk, "test_ended"),
        (variant.pk, "test_ended"),
    }
    assert pool_traffic(organization) == {"v1.0.0": 50.0, "v1.1.0": 50.0}
    experiment.refresh_from_db()
    assert (experiment.status, experiment.looks) == ("running", [])


def test_the_global_pool_has_its_own_test(organization: Organization) -> None:
    control = model_deploy(model=RegisteredModelFactory.create(model_version="v1.0.0"), traffic_percentage=100)
    variant = RegisteredModelFactory.create(model_version="v1.1.0")
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment))
    send(variant, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)

    with pytest.raises(NotFound):
        promote_ab_test_winner(organization=organization)
    answer = promote_ab_test_winner(organization=None)

    assert answer["action"] == "promoted"
    assert pool_traffic(None) == {"v1.1.0": 100.0}


# --- Automatic promotion ------------------------------------------------------------------------


@pytest.fixture
def decided_test(organization: Organization, control: RegisteredModel, variant: RegisteredModel) -> Experiment:
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment))
    send(variant, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)
    return experiment


def test_automatic_promotion_does_nothing_unless_switched_on(
    settings: Any, organization: Organization, decided_test: Experiment
) -> None:
    settings.AB_TEST_AUTO_PROMOTE = False

    assert experiments_auto_promote() == []
    assert auto_promote_experiments() == 0

    decided_test.refresh_from_db()
    assert (decided_test.status, decided_test.looks) == ("running", [])
    assert pool_traffic(organization) == {"v1.0.0": 50.0, "v1.1.0": 50.0}


def test_automatic_promotion_applies_what_the_test_decided_and_leaves_undecided_tests_running(
    settings: Any, organization: Organization, decided_test: Experiment
) -> None:
    settings.AB_TEST_AUTO_PROMOTE = True
    global_control = model_deploy(model=RegisteredModelFactory.create(model_version="v1.0.0"), traffic_percentage=100)
    undecided = start(RegisteredModelFactory.create(model_version="v1.1.0"), look=4)
    send(global_control, 10, at=in_first_week(undecided))

    moved = auto_promote_experiments()

    assert moved == 1
    assert pool_traffic(organization) == {"v1.1.0": 100.0}
    undecided.refresh_from_db()
    assert undecided.status == "running"
    assert [row["look"] for row in undecided.looks] == [4]


def test_the_daily_schedule_is_created_once() -> None:
    assert ensure_auto_promote_schedule() is True
    assert ensure_auto_promote_schedule() is False

    schedule = Schedule.objects.get(name=AUTO_PROMOTE_SCHEDULE)
    assert (schedule.func, schedule.schedule_type) == ("experiments.tasks.auto_promote_experiments", Schedule.DAILY)


def test_setup_schedules_includes_the_daily_auto_promotion() -> None:
    out = StringIO()

    call_command("setup_schedules", stdout=out)
    call_command("setup_schedules", stdout=out)

    assert "Daily A/B test auto-promotion scheduled (AB_TEST_AUTO_PROMOTE is off)" in out.getvalue()
    assert "auto-promotion already scheduled" in out.getvalue()
    assert Schedule.objects.filter(func="experiments.tasks.auto_promote_experiments").count() == 1


# --- The command --------------------------------------------------------------------------------


def test_the_command_promotes_the_winner_of_an_organization_by_slug(
    organization: Organization, decided_test: Experiment
) -> None:
    out = StringIO()

    call_command("promote_winner", "--organization", organization.slug, stdout=out)

    assert "Promoted: winner variant" in out.getvalue()
    assert "z: " in out.getvalue() and "boundary: " in out.getvalue()
    assert pool_traffic(organization) == {"v1.1.0": 100.0}


def test_the_command_dry_run_prints_the_decision_and_changes_nothing(
    organization: Organization, decided_test: Experiment
) -> None:
    out = StringIO()

    call_command("promote_winner", "--organization", str(organization.pk), "--dry-run", stdout=out)

    assert "Dry run, nothing changed. Would be: Promoted" in out.getvalue()
    assert pool_traffic(organization) == {"v1.0.0": 50.0, "v1.1.0": 50.0}


def test_the_command_explains_an_undecided_test(organization: Organization, control: RegisteredModel) -> None:
    variant = RegisteredModelFactory.create(organization=organization, model_version="v1.1.0")
    start(variant, look=1)
    out = StringIO()

    call_command("promote_winner", "--organization", organization.slug, stdout=out)

    assert "No change: winner none yet" in out.getvalue()
    assert "no decision before look 2" in out.getvalue()


def test_the_command_refuses_an_unknown_organization_and_a_pool_without_a_test(organization: Organization) -> None:
    with pytest.raises(CommandError, match="No organization has the slug or id"):
        call_command("promote_winner", "--organization", "nobody")
    with pytest.raises(CommandError, match="No A/B test is running in the global pool"):
        call_command("promote_winner")


# --- Concurrency (PostgreSQL: row locks across connections) -------------------------------------

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks across connections need PostgreSQL"
)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_promotions_at_once_apply_the_decision_once() -> None:
    organization = OrganizationFactory.create()
    control = model_deploy(
        model=RegisteredModelFactory.create(organization=organization, model_version="v1.0.0"), traffic_percentage=100
    )
    variant = RegisteredModelFactory.create(organization=organization, model_version="v1.1.0")
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment))
    send(variant, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)

    results = run_at_once([lambda: promote_ab_test_winner(organization=organization) for _ in range(3)])

    answers = [result for result in results if isinstance(result, dict)]
    assert [answer["action"] for answer in answers] == ["promoted"]
    assert all(isinstance(result, NotFound) for result in results if not isinstance(result, dict))
    assert ModelEvent.objects.filter(model=variant, action="promoted").count() == 1


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_tests_started_at_once_in_one_pool_leave_one_running() -> None:
    organization = OrganizationFactory.create()
    model_deploy(
        model=RegisteredModelFactory.create(organization=organization, model_version="v1.0.0"), traffic_percentage=100
    )
    variants = [
        RegisteredModelFactory.create(organization=organization, model_version=f"v1.{n}.0") for n in range(1, 4)
    ]

    results = run_at_once([functools.partial(experiment_start, variant=variant) for variant in variants])

    assert sum(isinstance(result, Experiment) for result in results) == 1
    assert all(isinstance(result, Conflict) for result in results if not isinstance(result, Experiment))
    assert Experiment.objects.filter(status="running").count() == 1
    assert sorted(pool_traffic(organization).values()) == [10.0, 90.0]
