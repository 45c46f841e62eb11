"""An A/B test's live progress: every number so far, what is provisional, and when it can decide.

Only matured looks decide (:mod:`experiments.selectors`), so a test says nothing for its first
weeks; this module shows what is known meanwhile. Per arm: leads and messages so far (all, and
matured), the reply, meeting and close rates with cluster-robust 95 % intervals, and the lift in
per-message value with its interval. Numbers that include messages whose outcome may still
arrive are marked ``provisional``. Then the plan: the look dates, the leads still needed for
80 % power at the planned minimum effect, an estimated decision date and a progress
percentage; and two series a chart can draw (cumulative rates per arm per day; the statistic
against the boundary per look). A handful of bounded queries: one per look, three more.
"""

import datetime
import math
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from experiments.models import Experiment
from experiments.selectors import Evidence, experiment_evidence, window_arm_counts
from experiments.stats import (
    FIRST_DECISION_LOOK,
    ArmCounts,
    additional_leads_needed,
    arm_moments,
    look_boundary,
    value_z,
)
from outcomes.models import OutcomeLabel

Z95 = 1.959963984540054
RATES = {"reply_rate": "replies", "meeting_rate": "meetings", "close_rate": "deals", "value": "value"}
STAGE_COLUMNS = {"replies": "replied_at", "meetings": "meeting_booked_at", "deals": "deal_closed_at"}
DAILY_RATES = {"reply_rate": "replies", "meeting_rate": "meetings", "close_rate": "deals"}


# --- Dates --------------------------------------------------------------------------------------


def look_schedule(experiment: Experiment) -> list[dict[str, Any]]:
    """Each planned look: the messages it counts (sent before ``data_until``) and when it is taken (``at``)."""
    interval = datetime.timedelta(days=experiment.look_interval_days)
    maturation = datetime.timedelta(days=settings.OUTCOME_MATURATION_DAYS)
    return [
        {
            "look": k,
            "data_until": experiment.started_at + k * interval,
            "at": experiment.started_at + k * interval + maturation,
        }
        for k in range(1, experiment.planned_looks + 1)
    ]


def earliest_decision_at(experiment: Experiment) -> datetime.datetime:
    """The first moment the test may decide: when its first deciding look is taken."""
    return look_schedule(experiment)[min(FIRST_DECISION_LOOK, experiment.planned_looks) - 1]["at"]


def earliest_decision_from(*, started_at: datetime.datetime, planned_looks: int) -> datetime.datetime:
    """:func:`earliest_decision_at` of a test starting at ``started_at`` with the default look interval."""
    probe = Experiment(started_at=started_at, planned_looks=planned_looks)
    return earliest_decision_at(probe)


# --- Numbers with intervals ---------------------------------------------------------------------


def interval(mean: float, variance: float) -> dict[str, float]:
    """A value with its 95 % interval."""
    half = Z95 * math.sqrt(variance)
    return {"value": mean, "low": mean - half, "high": mean + half}


def rate_interval(mean: float, variance: float) -> dict[str, float]:
    """A rate with its 95 % interval, kept within 0 and 1 (a rate cannot leave them)."""
    number = interval(mean, variance)
    return {**number, "low": max(number["low"], 0.0), "high": min(number["high"], 1.0)}


def arm_numbers(arm: ArmCounts, *, provisional: bool) -> dict[str, Any]:
    """Leads, messages and the rates (per message, 95 % cluster-robust intervals) of one arm."""
    rates = {name: rate_interval(*arm_moments(arm, metric)) if arm.messages else None for name, metric in RATES.items()}
    return {
        "leads": arm.lead_count,
        "messages": arm.messages,
        "leads_without_key": arm.unkeyed_leads,
        "provisional": provisional,
        **rates,
    }


def value_lift(control: ArmCounts, variant: ArmCounts, *, provisional: bool) -> dict[str, Any] | None:
    """The relative lift in per-message value, ``variant / control - 1``, with a 95 % interval.

    The interval is the delta method on the log of the ratio; ``None`` while either arm has no
    value at all.
    """
    if not control.messages or not variant.messages:
        return None
    (mean_c, var_c), (mean_v, var_v) = arm_moments(control, "value"), arm_moments(variant, "value")
    if mean_c <= 0 or mean_v <= 0:
        return None
    log_ratio, spread = math.log(mean_v / mean_c), math.sqrt(var_v / mean_v**2 + var_c / mean_c**2)
    return {
        "value": mean_v / mean_c - 1,
        "low": math.exp(log_ratio - Z95 * spread) - 1,
        "high": math.exp(log_ratio + Z95 * spread) - 1,
        "z": value_z(control, variant),
        "provisional": provisional,
    }


# --- The plan -----------------------------------------------------------------------------------


def _leads_needed(experiment: Experiment, control: ArmCounts, variant: ArmCounts) -> int | None:
    return additional_leads_needed(
        control,
        variant,
        planned_looks=experiment.planned_looks,
        expected_variant_share=experiment.planned_variant_share,
        minimum_effect=experiment.minimum_effect,
    )


def plan(experiment: Experiment, every: tuple[ArmCounts, ArmCounts], now: datetime.datetime) -> dict[str, Any]:
    """Leads still needed for 80 % power, the estimated decision date and the progress so far.

    The need is measured on every message so far (provisional); the date assumes leads keep
    arriving at their rate so far, and is the first look that counts the needed leads (never
    before the earliest decision, never after the last planned look).
    """
    leads = every[0].lead_count + every[1].lead_count
    needed = _leads_needed(experiment, *every)
    days = max((now - experiment.started_at) / datetime.timedelta(days=1), 1.0)
    schedule = look_schedule(experiment)
    estimate = None
    if needed is not None and leads:
        reached = now + datetime.timedelta(days=needed / (leads / days))
        weeks = math.ceil((reached - experiment.started_at) / datetime.timedelta(days=experiment.look_interval_days))
        estimate = schedule[min(max(weeks, FIRST_DECISION_LOOK), experiment.planned_looks) - 1]["at"]
    target = leads + needed if needed is not None else experiment.planned_leads
    return {
        "planned_leads": experiment.planned_leads,
        "minimum_effect": experiment.minimum_effect,
        "leads_needed": needed,
        "leads_needed_provisional": True,
        "estimated_decision_at": estimate,
        "progress_percent": round(min(100.0, 100.0 * leads / target), 1) if target else 0.0,
    }


# --- Series for charts --------------------------------------------------------------------------


def daily_series(experiment: Experiment, now: datetime.datetime, matured: datetime.datetime) -> list[dict[str, Any]]:
    """Cumulative reply, meeting and close rates per arm per day of sending, in one query."""
    rows = (
        OutcomeLabel.objects.filter(
            model_id__in=[experiment.control_id, experiment.variant_id],
            sent_at__gte=experiment.started_at,
            sent_at__lt=now,
        )
        .order_by()
        .annotate(day=TruncDate("sent_at"))
        .values("model_id", "day")
        .annotate(
            messages=Count("id"),
            **{k: Count("id", filter=Q(**{f"{c}__isnull": False})) for k, c in STAGE_COLUMNS.items()},
        )
        .order_by("day")
    )
    arms = {experiment.control_id: "control", experiment.variant_id: "variant"}
    totals: dict[str, dict[str, int]] = {name: dict.fromkeys(["messages", *STAGE_COLUMNS], 0) for name in arms.values()}
    series = []
    for row in rows:
        total = totals[arms[row["model_id"]]]
        for key in total:
            total[key] += row[key]
        series.append(
            {
                "day": row["day"],
                "arm": arms[row["model_id"]],
                "messages": total["messages"],
                **{rate: total[stage] / total["messages"] for rate, stage in DAILY_RATES.items()},
                "provisional": row["day"] >= matured.date(),
            }
        )
    return series


def look_series(experiment: Experiment, evidence: Evidence) -> list[dict[str, Any]]:
    """The statistic against its boundary at each look taken so far."""
    series = []
    for k, (control, variant) in enumerate(evidence.looks, start=1):
        series.append(
            {
                "look": k,
                "information_fraction": evidence.fractions[k - 1],
                "z": value_z(control, variant),
                "boundary": look_boundary(k, experiment.planned_looks, evidence.fractions[:k]),
                "leads": control.lead_count + variant.lead_count,
            }
        )
    return series


# --- The whole picture --------------------------------------------------------------------------


def _arms(
    experiment: Experiment, every: tuple[ArmCounts, ArmCounts], matured: tuple[ArmCounts, ArmCounts]
) -> list[dict[str, Any]]:
    """Both arms: all their messages so far (provisional) and the matured ones."""
    arms = []
    for index, (name, model) in enumerate((("control", experiment.control), ("variant", experiment.variant))):
        arms.append(
            {
                "arm": name,
                "model_id": str(model.pk),
                "model_version": model.model_version,
                "all": arm_numbers(every[index], provisional=True),
                "matured": arm_numbers(matured[index], provisional=False),
            }
        )
    return arms


def _looks(experiment: Experiment, evidence: Evidence, now: datetime.datetime) -> dict[str, Any]:
    """The look the decision stands on, the next one, and the whole schedule."""
    schedule = look_schedule(experiment)
    look = evidence.decision.look
    return {
        "current": schedule[look - 1] if look else None,
        "next": schedule[look] if look < len(schedule) else None,
        "schedule": schedule,
        "earliest_decision_at": earliest_decision_at(experiment),
    }


def experiment_progress(experiment: Experiment, *, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Everything the experiment page and ``GET /api/experiments/{id}`` show, as it stands ``now``.

    A running test is evaluated as it stands (nothing is saved); a finished one at the look of
    its recorded decision, with that decision. Only ``decision`` decides; every number marked
    ``provisional`` includes messages whose outcome may still arrive.
    """
    return progress_and_evidence(experiment, now=now)[0]


def progress_and_evidence(
    experiment: Experiment, *, now: datetime.datetime | None = None
) -> tuple[dict[str, Any], Evidence]:
    """:func:`experiment_progress` and the evidence of the decision it shows (the arms at each look)."""
    now = now or timezone.now()
    running = experiment.status == Experiment.Status.RUNNING
    end = now if running else (experiment.ended_at or now)
    matured_at = end - datetime.timedelta(days=settings.OUTCOME_MATURATION_DAYS)
    evidence = experiment_evidence(
        experiment, look=None if running else int(experiment.decision.get("look", 0)), now=now
    )
    every = window_arm_counts(experiment, start=experiment.started_at, end=end)
    matured = window_arm_counts(experiment, start=experiment.started_at, end=max(matured_at, experiment.started_at))
    decision = evidence.decision.as_dict() if running else {**evidence.decision.as_dict(), **experiment.decision}
    progress = {
        "id": str(experiment.pk),
        "organization_id": str(experiment.organization_id) if experiment.organization_id else None,
        "status": experiment.status,
        "started_at": experiment.started_at,
        "ended_at": experiment.ended_at,
        "planned_variant_share": experiment.planned_variant_share,
        "planned_looks": experiment.planned_looks,
        "look_interval_days": experiment.look_interval_days,
        "arms": _arms(experiment, every, matured),
        "lift": {"all": value_lift(*every, provisional=True), "matured": value_lift(*matured, provisional=False)},
        "leads_without_key": every[0].unkeyed_leads + every[1].unkeyed_leads,
        "looks": _looks(experiment, evidence, now),
        "plan": plan(experiment, every, now),
        "decision": decision,
        "series": {"daily": daily_series(experiment, end, matured_at), "looks": look_series(experiment, evidence)},
    }
    return progress, evidence
