"""A/B experiments: start one, count its arms, evaluate it at each look and apply the decision.

An experiment compares one control with one variant in a traffic pool (an organization's, or the
global one); at most one runs per pool. :func:`experiment_start` is the only way an A/B test
starts, so every test has its experiment. :func:`promote_ab_test_winner` (the seed's name; the
admin action, the ``promote_winner`` command and ``POST /training/promote-winner`` call it)
evaluates the running experiment and applies what the test decided, through the registry's
services, in one transaction. :func:`experiments_auto_promote` does the same for every running
experiment on the daily schedule when ``AB_TEST_AUTO_PROMOTE`` is on.

**Where the counts come from.** The arms' counts need outcome labels, which belong to the
``outcomes`` app above the registry. The registry does not import it: the counts are one aggregate
query through the reverse relation ``RegisteredModel.outcomes`` that ``outcomes.OutcomeLabel.model``
declares. That names the label columns it reads (``sent_at``, ``replied_at``,
``meeting_booked_at``, ``deal_closed_at``, ``deal_value``, ``unsubscribed_at``) in a query, not
in an import, just as outcomes names ``"registry.RegisteredModel"`` in its foreign key. It keeps
the read on the ORM (the same on SQLite and PostgreSQL) and avoids a registration hook that
could be missing at run time; the tests of this module pin the columns.

**Looks.** Look *k* reads the messages sent during the first *k* intervals
(``look_interval_days``, a week) of the experiment, and it is taken once all of them have matured
(``OUTCOME_MATURATION_DAYS`` after the last was sent): the look number is the count of whole
intervals between ``started_at`` and ``now - OUTCOME_MATURATION_DAYS``, capped at
``planned_looks``. So each look sees *k* intervals of matured messages, as the sequential
boundary and ``bench/ab_simulation.py`` assume, and evaluating again during the same look (the
schedule runs daily) reads the same messages instead of adding looks the boundary was not
planned for; only outcomes that are reported late can still move a look, whose entry in
``Experiment.looks`` is then updated in place. After the last look the data stop growing.
"""

import datetime
import logging
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django_q.models import Schedule

from flywheel.errors import ApplicationError, Conflict, NotFound
from flywheel.models import Organization
from registry.models import Experiment, ModelEvent, RegisteredModel, pool_key
from registry.services import Actor, dry_run, model_archive, model_promote, model_set_traffic, model_start_ab_test
from registry.stats import ArmCounts, Decision, decide

logger = logging.getLogger(__name__)

Status = Experiment.Status
Deployed = RegisteredModel.Status.DEPLOYED
AUTO_PROMOTE_SCHEDULE = "registry: auto-promote A/B test winners"
RUNNING_ALREADY = "An A/B test is already running in this pool; promote or stop it first."


# --- Starting -----------------------------------------------------------------------------------


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
    model_start_ab_test(variant=variant, variant_traffic=variant_traffic, actor=actor, reason=reason)
    # Checked after model_start_ab_test, which locked the pool until this transaction ends: a
    # concurrent start in the same pool has committed its experiment by now, or waits for ours.
    pool = pool_key(variant.organization_id)
    if Experiment.objects.filter(pool=pool, status=Status.RUNNING).exists():
        raise Conflict(RUNNING_ALREADY)
    controls = list(RegisteredModel.objects.in_pool(variant.organization_id).deployed().exclude(pk=variant.pk))
    if len(controls) != 1:
        versions = ", ".join(sorted(row.model_version for row in controls))
        raise Conflict(f"An A/B test needs exactly one deployed control, and this pool has {versions}.")
    experiment = Experiment(
        organization_id=variant.organization_id,
        pool=pool,
        control=controls[0],
        variant=variant,
        planned_variant_share=variant.traffic_percentage / 100,
        planned_looks=settings.AB_TEST_PLANNED_LOOKS,
    )
    experiment.full_clean()
    experiment.save()
    return experiment


def experiment_start_on_deploy(
    *, model: RegisteredModel, traffic_percentage: float, ab_test_group: str, actor: Actor = None, reason: str = ""
) -> Experiment | None:
    """Start ``model``'s A/B test if this deploy is one, and return the experiment; ``None`` if not.

    :func:`~registry.services.model_deploy` asks first. A deploy starts an A/B test when it puts
    a model that is not deployed yet into a variant group, below 100 %, beside a pool's single
    deployed model, with no test running there. Any other deploy stays a plain traffic change
    (a second variant beside a running test, say; the test's sample-ratio check notices if that
    changes its split). The variant joins group A, as every A/B test's variant does.
    """
    variant_groups = (RegisteredModel.ABTestGroup.VARIANT_A, RegisteredModel.ABTestGroup.VARIANT_B)
    if ab_test_group not in variant_groups or model.status == Deployed or traffic_percentage >= 100:
        return None
    others = RegisteredModel.objects.in_pool(model.organization_id).deployed().exclude(pk=model.pk)
    running = Experiment.objects.filter(pool=pool_key(model.organization_id), status=Status.RUNNING)
    if others.count() != 1 or running.exists():
        return None
    return experiment_start(variant=model, variant_traffic=traffic_percentage, actor=actor, reason=reason)


# --- Looks and counts ---------------------------------------------------------------------------


def experiment_look(experiment: Experiment, *, now: datetime.datetime | None = None) -> int:
    """The look the experiment has reached: whole intervals of matured messages, at most ``planned_looks``."""
    matured = (now or timezone.now()) - datetime.timedelta(days=settings.OUTCOME_MATURATION_DAYS)
    intervals = (matured - experiment.started_at) // datetime.timedelta(days=experiment.look_interval_days)
    return max(0, min(intervals, experiment.planned_looks))


def experiment_window(experiment: Experiment, *, look: int) -> tuple[datetime.datetime, datetime.datetime]:
    """The send times ``[start, end)`` that look ``look`` counts: its first ``look`` intervals."""
    end = experiment.started_at + datetime.timedelta(days=experiment.look_interval_days * look)
    return experiment.started_at, end


def experiment_arm_counts(
    experiment: Experiment, *, look: int | None = None, now: datetime.datetime | None = None
) -> tuple[ArmCounts, ArmCounts]:
    """The control's and the variant's counts at ``look`` (by default the look reached ``now``).

    One aggregate query over the arms' outcome labels (see the module docstring); replies,
    meetings, deals and unsubscribes count the messages that reached each stage, revenue sums
    the value of closed deals.
    """
    look = experiment_look(experiment, now=now) if look is None else look
    start, end = experiment_window(experiment, look=look)
    sent = Q(outcomes__sent_at__gte=start, outcomes__sent_at__lt=end)

    def reached(column: str) -> Count:
        return Count("outcomes", filter=sent & Q(**{f"outcomes__{column}__isnull": False}))

    rows = (
        RegisteredModel.objects.filter(pk__in=[experiment.control_id, experiment.variant_id])
        .annotate(
            messages=Count("outcomes", filter=sent),
            replies=reached("replied_at"),
            meetings=reached("meeting_booked_at"),
            deals=reached("deal_closed_at"),
            unsubscribes=reached("unsubscribed_at"),
            revenue=Sum("outcomes__deal_value", filter=sent & Q(outcomes__deal_closed_at__isnull=False)),
        )
        .values("pk", "messages", "replies", "meetings", "deals", "unsubscribes", "revenue")
    )
    counts = {row.pop("pk"): ArmCounts(**{**row, "revenue": float(row["revenue"] or 0)}) for row in rows}
    empty = ArmCounts(messages=0, replies=0, meetings=0, deals=0, revenue=0.0, unsubscribes=0)
    return counts.get(experiment.control_id, empty), counts.get(experiment.variant_id, empty)


# --- Evaluating ---------------------------------------------------------------------------------


def experiment_decision(
    experiment: Experiment, *, look: int | None = None, now: datetime.datetime | None = None
) -> tuple[ArmCounts, ArmCounts, Decision]:
    """The arms' counts and the test's decision at ``look`` (by default the current one), without saving."""
    look = experiment_look(experiment, now=now) if look is None else look
    control, variant = experiment_arm_counts(experiment, look=look)
    decision = decide(
        control,
        variant,
        look=look,
        planned_looks=experiment.planned_looks,
        expected_variant_share=experiment.planned_variant_share,
    )
    return control, variant, _concluded(decision)


def _concluded(decision: Decision) -> Decision:
    """At the last planned look, a variant that did not win has lost: the control stays.

    :func:`~registry.stats.decide` leaves such a look undecided, but the design has no later
    look (more data would be a look the boundary did not budget for), so the test ends there.
    """
    final = decision.look >= decision.planned_looks
    if not final or decision.promote or decision.stopped or decision.winner is not None:
        return decision
    why = f"the {decision.planned_looks} planned looks are over without a significant win: the control stays"
    return replace(decision, winner="control", reasons=[*decision.reasons, why], additional_messages_needed=None)


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


def running_experiment(organization: Organization | None, *, lock: bool = False) -> Experiment:
    """The experiment running in the organization's pool (the global pool for ``None``).

    Raises :class:`NotFound` when there is none.
    """
    experiments = Experiment.objects.select_related("control", "variant", "organization")
    if lock:
        experiments = experiments.select_for_update(of=("self",))
    pool = pool_key(organization.pk if organization else None)
    experiment = experiments.filter(pool=pool, status=Status.RUNNING).first()
    if experiment is None:
        where = f"organization {organization.slug}" if organization else "the global pool"
        raise NotFound(f"No A/B test is running in {where}; start one by deploying a model as a variant.")
    return experiment


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
    """Create (or repair) the daily django-q2 schedule of :func:`registry.tasks.auto_promote_experiments`.

    Idempotent, keyed by the schedule's name; returns whether it was created. The schedule always
    exists; the task itself does nothing unless ``AB_TEST_AUTO_PROMOTE`` is on.
    """
    _, created = Schedule.objects.update_or_create(
        name=AUTO_PROMOTE_SCHEDULE,
        defaults={"func": "registry.tasks.auto_promote_experiments", "schedule_type": Schedule.DAILY, "repeats": -1},
    )
    return created
