"""Every write to A/B experiments: deploying beside a control, starting, evaluating, applying the decision.

An experiment compares one control with one variant in a traffic pool; at most one runs per
pool. Traffic moves only through the registry's services, in the same transaction as the
experiment row; :func:`promote_ab_test_winner` (the seed's name) applies what the sequential
test of :mod:`experiments.stats` decided.
"""

import datetime
import logging
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

from experiments.models import Experiment
from experiments.progress import earliest_decision_from
from experiments.selectors import experiment_decision, experiment_running_in_pool, running_experiment
from experiments.stats import Decision
from flywheel.errors import ApplicationError, Conflict
from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel, pool_key
from registry.services import (
    Actor,
    dry_run,
    model_archive,
    model_deploy,
    model_promote,
    model_set_traffic,
    model_start_ab_test,
)

logger = logging.getLogger(__name__)

Status = Experiment.Status
Deployed = RegisteredModel.Status.DEPLOYED
Group = RegisteredModel.ABTestGroup
AUTO_PROMOTE_SCHEDULE = "registry: auto-promote A/B test winners"
AUTO_PROMOTE_TASK = "experiments.tasks.auto_promote_experiments"
RUNNING_ALREADY = "An A/B test is already running in this pool; promote or stop it first."


# --- Deploying and starting ---------------------------------------------------------------------


@transaction.atomic
def model_deploy_or_start_test(
    *,
    model: RegisteredModel,
    traffic_percentage: float = 100.0,
    ab_test_group: str = Group.CONTROL,
    actor: Actor = None,
    reason: str = "",
    require_test: bool = False,
) -> RegisteredModel:
    """Deploy ``model``, starting its A/B test with its experiment when the deploy is one.

    The one entry point for deploying a model beside a control (admin, API, command, training
    run). A deploy is an A/B test when it puts a model that is not deployed yet into a variant
    group, below 100 %, beside a pool's single deployed model, with no test running there; any
    other deploy is the registry's plain :func:`~registry.services.model_deploy`. With
    ``require_test`` the deploy must start a test, and is refused (:class:`Conflict`) if it cannot.
    """
    if require_test or _starts_test(model=model, traffic_percentage=traffic_percentage, group=ab_test_group):
        experiment_start(variant=model, variant_traffic=traffic_percentage, actor=actor, reason=reason)
        return model
    return model_deploy(
        model=model, traffic_percentage=traffic_percentage, ab_test_group=ab_test_group, actor=actor, reason=reason
    )


def _starts_test(*, model: RegisteredModel, traffic_percentage: float, group: str) -> bool:
    """Whether deploying ``model`` at ``traffic_percentage`` % in ``group`` starts an A/B test.

    A second variant beside a running test stays a plain traffic change (the test's sample-ratio
    check notices if that changes its split). The variant joins group A, as every test's does.
    """
    if group not in (Group.VARIANT_A, Group.VARIANT_B) or model.status == Deployed or traffic_percentage >= 100:
        return False
    others = RegisteredModel.objects.in_pool(model.organization_id).deployed().exclude(pk=model.pk)
    return others.count() == 1 and not experiment_running_in_pool(model.organization_id)


@transaction.atomic
def experiment_start(
    *, variant: RegisteredModel, variant_traffic: float = 10.0, actor: Actor = None, reason: str = ""
) -> Experiment:
    """Start an A/B test of ``variant`` at ``variant_traffic`` % against the pool's deployed model.

    The traffic moves through :func:`~registry.services.model_start_ab_test` and the experiment
    is created in the same transaction. Refused (:class:`Conflict`) when an experiment already
    runs in the pool, or when more than one model is deployed: the test compares one control
    with one variant.
    """
    earliest = earliest_decision_from(started_at=timezone.now(), planned_looks=settings.AB_TEST_PLANNED_LOOKS)
    stated = f"A/B test at {variant_traffic} %: earliest possible decision {earliest:%Y-%m-%d %H:%M} UTC"
    reason = f"{reason} ({stated})" if reason else stated
    model_start_ab_test(variant=variant, variant_traffic=variant_traffic, actor=actor, reason=reason)
    # Checked after model_start_ab_test, which locked the pool until this transaction ends: a
    # concurrent start in the same pool has committed its experiment by now, or waits for ours.
    if experiment_running_in_pool(variant.organization_id):
        raise Conflict(RUNNING_ALREADY)
    controls = list(RegisteredModel.objects.in_pool(variant.organization_id).deployed().exclude(pk=variant.pk))
    if len(controls) != 1:
        versions = ", ".join(sorted(row.model_version for row in controls))
        raise Conflict(f"An A/B test needs exactly one deployed control, and this pool has {versions}.")
    experiment = Experiment(
        organization_id=variant.organization_id,
        pool=pool_key(variant.organization_id),
        control=controls[0],
        variant=variant,
        planned_variant_share=variant.traffic_percentage / 100,
        planned_looks=settings.AB_TEST_PLANNED_LOOKS,
        planned_leads=settings.AB_TEST_PLANNED_LEADS,
        minimum_effect=settings.AB_TEST_MINIMUM_EFFECT,
    )
    experiment.full_clean()
    experiment.save()
    return experiment


# --- Evaluating ---------------------------------------------------------------------------------


@transaction.atomic
def experiment_evaluate(experiment: Experiment, *, now: datetime.datetime | None = None) -> Decision:
    """Evaluate a running experiment now; record the decision and the look's statistic.

    ``Experiment.looks`` keeps one entry per look, replaced when the look is evaluated again.
    A finished experiment is refused (:class:`Conflict`): its decision is final.
    """
    now = now or timezone.now()
    # Race: the daily schedule and a staff member evaluating (or promoting) at the same moment
    # would each rewrite ``looks`` from what they read; the row lock makes them take turns.
    locked = Experiment.objects.select_for_update().filter(pk=experiment.pk).first()
    if locked is None or locked.status != Status.RUNNING:
        raise Conflict(f"The experiment {experiment} is not running any more.")
    control, variant, decision = experiment_decision(locked, now=now)
    entry = {
        "look": decision.look,
        "z": decision.z,
        "boundary": decision.boundary,
        "control_messages": control.messages,
        "variant_messages": variant.messages,
        "evaluated_at": now.isoformat(),
    }
    looks = [row for row in locked.looks if row.get("look") != decision.look]
    locked.looks = sorted([*looks, entry], key=lambda row: row["look"])
    locked.decision = decision.as_dict()
    locked.save(update_fields=["looks", "decision"])
    experiment.looks, experiment.decision = locked.looks, locked.decision
    return decision


# --- Applying the decision ----------------------------------------------------------------------


def _finish(experiment: Experiment, *, status: str, winner: RegisteredModel | None) -> None:
    experiment.status = status
    experiment.winner = winner
    experiment.ended_at = timezone.now()
    experiment.save(update_fields=["status", "winner", "ended_at"])


def _apply(experiment: Experiment, decision: Decision, actor: Actor) -> str:
    """Move traffic as ``decision`` says and end the experiment; return what was done."""
    control, variant = experiment.control, experiment.variant
    summary = "; ".join(decision.reasons)
    if decision.promote:
        model_promote(model=variant, actor=actor, reason=f"won the A/B test against {control.model_version}: {summary}")
        _finish(experiment, status=Status.DECIDED, winner=variant)
        return "promoted"
    if not (decision.stopped or decision.winner == "control"):
        return "none"
    why = "A/B test stopped" if decision.stopped else f"lost the A/B test against {control.model_version}"
    model_archive(model=variant, actor=actor, reason=f"{why}: {summary}")
    control.refresh_from_db()
    if control.traffic_percentage != 100.0:
        # Something else was deployed during the test: the control was the baseline, and gets it all back.
        model_set_traffic(model=control, traffic_percentage=100.0, actor=actor, reason=f"{why}: back to the control")
    if decision.stopped:
        _finish(experiment, status=Status.STOPPED, winner=None)
        return "stopped"
    _finish(experiment, status=Status.DECIDED, winner=control)
    return "rolled_back"


def _abandon(experiment: Experiment) -> dict[str, Any]:
    """Stop an experiment one of whose arms left the pool outside the test; no traffic moves.

    The answer has the usual shape: the test as it stood, marked stopped with the reason.
    """
    gone = [arm.model_version for arm in (experiment.control, experiment.variant) if arm.status != Deployed]
    reason = f"{', '.join(gone)} no longer deployed: the A/B test was ended outside the experiment"
    _, _, decision = experiment_decision(experiment)
    decision = replace(
        decision, promote=False, winner=None, stopped=True, reasons=[reason], additional_messages_needed=None
    )
    experiment.decision = decision.as_dict()
    experiment.save(update_fields=["decision"])
    _finish(experiment, status=Status.STOPPED, winner=None)
    return {**decision.as_dict(), "winner_id": None, "action": "stopped", **_ids(experiment)}


def _ids(experiment: Experiment) -> dict[str, Any]:
    return {"experiment_id": str(experiment.pk), "experiment_status": experiment.status}


@transaction.atomic
def promote_ab_test_winner(
    *, organization: Organization | None, actor: Actor = None, now: datetime.datetime | None = None
) -> dict[str, Any]:
    """Evaluate the pool's running A/B test and apply its decision (the seed's ``promote_ab_test_winner``).

    Promote: the variant takes 100 %, the control is archived, the experiment is decided. The
    variant lost, or the test was stopped as broken: the variant is archived and the control
    gets 100 % back. Undecided: nothing moves and the answer says why, and how many more
    messages the planned power needs. Returns the seed's fields (``winner``, ``winner_id``,
    ``improvement_percentage``, ``control_score``, ``variant_score``), the test's statistics and
    reasons, ``action`` (promoted, rolled_back, stopped or none) and the experiment's id and status.
    """
    # Race: two promotions (admin, command, schedule) must not both apply a decision; the second
    # waits here and then finds the experiment finished.
    experiment = running_experiment(organization, lock=True)
    if experiment.control.status != Deployed or experiment.variant.status != Deployed:
        return _abandon(experiment)
    decision = experiment_evaluate(experiment, now=now)
    action = _apply(experiment, decision, actor)
    winner = {"variant": experiment.variant, "control": experiment.control}.get(decision.winner or "")
    answer = decision.as_dict()
    answer.update(winner_id=str(winner.pk) if winner and action != "none" else None, action=action)
    return {**answer, **_ids(experiment)}


def promotion_preview(
    *, organization: Organization | None, actor: Actor = None, now: datetime.datetime | None = None
) -> tuple[dict[str, Any], list[ModelEvent]]:
    """What :func:`promote_ab_test_winner` would answer now, and the audit rows it would write; nothing is kept.

    The same code runs inside a rolled-back transaction (:func:`~registry.services.dry_run`), so
    a confirmation page or ``--dry-run`` cannot drift from what applying does.
    """
    answers: list[dict[str, Any]] = []
    events = dry_run(lambda: answers.append(promote_ab_test_winner(organization=organization, actor=actor, now=now)))
    return answers[0], events


# --- Automatic promotion ------------------------------------------------------------------------


def experiments_auto_promote(*, now: datetime.datetime | None = None) -> list[dict[str, Any]]:
    """Apply what the test decided in every running experiment; nothing unless ``AB_TEST_AUTO_PROMOTE``.

    Only the sequential test's decisions are applied (undecided experiments keep running). One
    pool's failure is logged and does not hold up the others. Returns each pool's answer.
    """
    if not settings.AB_TEST_AUTO_PROMOTE:
        return []
    answers = []
    for experiment in Experiment.objects.filter(status=Status.RUNNING).select_related("organization"):
        try:
            answers.append(promote_ab_test_winner(organization=experiment.organization, now=now))
        except ApplicationError as exc:
            logger.warning("A/B test %s not evaluated: %s", experiment.pk, exc.message)
    return answers


def ensure_auto_promote_schedule() -> bool:
    """Create (or repair) the daily django-q2 schedule of :func:`experiments.tasks.auto_promote_experiments`.

    Idempotent, keyed by the schedule's name; returns whether it was created. The schedule always
    exists; the task itself does nothing unless ``AB_TEST_AUTO_PROMOTE`` is on.
    """
    _, created = Schedule.objects.update_or_create(
        name=AUTO_PROMOTE_SCHEDULE,
        defaults={"func": AUTO_PROMOTE_TASK, "schedule_type": Schedule.DAILY, "repeats": -1},
    )
    return created
