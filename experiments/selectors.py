"""Reads of A/B experiments: the look reached, the arms' counts, the decision as it stands.

Nothing here saves: :mod:`experiments.services` records what these return. The arms' counts come
from the outcomes app's :func:`outcomes.selectors.arm_lead_sums`, summed per lead (the unit the
routing randomises), one aggregate query per look.
"""

import datetime
import uuid
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.utils import timezone

from experiments.models import Experiment
from experiments.stats import FIRST_DECISION_LOOK, ArmCounts, Decision, LeadSums, decide
from flywheel.errors import NotFound
from flywheel.models import Organization
from outcomes.selectors import arm_lead_sums
from registry.models import pool_key

EMPTY_ARM = ArmCounts(messages=0, replies=0, meetings=0, deals=0, revenue=0.0, unsubscribes=0)


def experiment_look(experiment: Experiment, *, now: datetime.datetime | None = None) -> int:
    """The look the experiment has reached: whole intervals of matured messages, at most ``planned_looks``."""
    matured = (now or timezone.now()) - datetime.timedelta(days=settings.OUTCOME_MATURATION_DAYS)
    intervals = (matured - experiment.started_at) // datetime.timedelta(days=experiment.look_interval_days)
    return max(0, min(intervals, experiment.planned_looks))


def experiment_window(experiment: Experiment, *, look: int) -> tuple[datetime.datetime, datetime.datetime]:
    """The send times ``[start, end)`` that look ``look`` counts: its first ``look`` intervals."""
    end = experiment.started_at + datetime.timedelta(days=experiment.look_interval_days * look)
    return experiment.started_at, end


def arm_from_sums(row: dict[str, Any] | None) -> ArmCounts:
    """One arm's :class:`ArmCounts` from a row of :func:`outcomes.selectors.arm_lead_sums`."""
    if row is None:
        return EMPTY_ARM
    sums = {name: LeadSums(*values) for name, values in row["sums"].items()}
    fields = {name: row[name] for name in ("messages", "replies", "meetings", "deals", "unsubscribes", "revenue")}
    return ArmCounts(
        **fields,
        leads=row["leads"],
        unkeyed_leads=row["unkeyed_leads"],
        messages_squared=row["messages_squared"],
        sums=sums,
    )


def window_arm_counts(
    experiment: Experiment, *, start: datetime.datetime, end: datetime.datetime
) -> tuple[ArmCounts, ArmCounts]:
    """The control's and the variant's per-lead counts of the messages sent in ``[start, end)``: one query."""
    rows = arm_lead_sums(model_ids=[experiment.control_id, experiment.variant_id], sent_from=start, sent_before=end)
    return arm_from_sums(rows.get(experiment.control_id)), arm_from_sums(rows.get(experiment.variant_id))


def experiment_arm_counts(
    experiment: Experiment, *, look: int | None = None, now: datetime.datetime | None = None
) -> tuple[ArmCounts, ArmCounts]:
    """The control's and the variant's counts at ``look`` (by default the look reached ``now``).

    Replies, meetings, deals and unsubscribes count the messages that reached each stage,
    revenue sums the value of closed deals; the sums per lead come with them.
    """
    look = experiment_look(experiment, now=now) if look is None else look
    start, end = experiment_window(experiment, look=look)
    return window_arm_counts(experiment, start=start, end=end)


def information_fractions(experiment: Experiment, leads_per_look: list[int]) -> list[float]:
    """Each look's information fraction: its leads over the planned leads, at most 1; the last planned look is 1."""
    fractions = [min(leads / experiment.planned_leads, 1.0) for leads in leads_per_look]
    return [1.0 if k + 1 >= experiment.planned_looks else value for k, value in enumerate(fractions)]


def experiment_looks(experiment: Experiment, *, look: int) -> list[tuple[ArmCounts, ArmCounts]]:
    """The arms' counts at each look ``1..look``: one bounded query per look."""
    return [experiment_arm_counts(experiment, look=k) for k in range(1, look + 1)]


@dataclass(frozen=True)
class Evidence:
    """What a decision rests on: the arms at each look so far, their information fractions, the decision."""

    looks: list[tuple[ArmCounts, ArmCounts]]
    fractions: list[float]
    control: ArmCounts
    variant: ArmCounts
    decision: Decision


def experiment_evidence(
    experiment: Experiment, *, look: int | None = None, now: datetime.datetime | None = None
) -> Evidence:
    """The arms at every look up to ``look`` (by default the current one) and the decision there, unsaved.

    The boundary is spent on the information fractions of every look so far, so looks of
    unequal size keep the error rate. One bounded query per look.
    """
    look = experiment_look(experiment, now=now) if look is None else look
    looks = experiment_looks(experiment, look=look)
    control, variant = looks[-1] if looks else (EMPTY_ARM, EMPTY_ARM)
    fractions = information_fractions(experiment, [c.lead_count + v.lead_count for c, v in looks])
    decision = decide(
        control,
        variant,
        look=look,
        planned_looks=experiment.planned_looks,
        expected_variant_share=experiment.planned_variant_share,
        fractions=fractions or None,
        minimum_effect=experiment.minimum_effect,
    )
    return Evidence(looks, fractions, control, variant, _concluded(decision))


def experiment_decision(
    experiment: Experiment, *, look: int | None = None, now: datetime.datetime | None = None
) -> tuple[ArmCounts, ArmCounts, Decision]:
    """The arms' counts and the test's decision at ``look`` (by default the current one), without saving."""
    evidence = experiment_evidence(experiment, look=look, now=now)
    return evidence.control, evidence.variant, evidence.decision


def _concluded(decision: Decision) -> Decision:
    """At the last planned look, a variant that did not win has lost: the control stays.

    :func:`~experiments.stats.decide` leaves such a look undecided, but the design has no later
    look (more data would be a look the boundary did not budget for), so the test ends there.
    """
    final = decision.look >= decision.planned_looks or (decision.information_fraction or 0.0) >= 1.0
    if decision.look < min(FIRST_DECISION_LOOK, decision.planned_looks):
        return decision
    if not final or decision.promote or decision.stopped or decision.winner is not None:
        return decision
    why = "the planned information is reached without a significant win: the control stays"
    return replace(
        decision,
        winner="control",
        reasons=[*decision.reasons, why],
        additional_messages_needed=None,
        additional_leads_needed=None,
    )


def running_experiment(organization: Organization | None, *, lock: bool = False) -> Experiment:
    """The experiment running in the organization's pool (the global pool for ``None``).

    With ``lock``, its row is locked until the transaction ends. Raises :class:`NotFound` when
    there is none.
    """
    experiments = Experiment.objects.select_related("control", "variant", "organization")
    if lock:
        experiments = experiments.select_for_update(of=("self",))
    pool = pool_key(organization.pk if organization else None)
    experiment = experiments.filter(pool=pool, status=Experiment.Status.RUNNING).first()
    if experiment is None:
        where = f"organization {organization.slug}" if organization else "the global pool"
        raise NotFound(f"No A/B test is running in {where}; start one by deploying a model as a variant.")
    return experiment


def experiment_running_in_pool(organization_id: uuid.UUID | str | None) -> bool:
    """Whether an experiment runs in the pool of ``organization_id`` (``None``: the global pool)."""
    return Experiment.objects.filter(pool=pool_key(organization_id), status=Experiment.Status.RUNNING).exists()
