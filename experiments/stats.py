"""The A/B test's decision, from per-lead sums alone: a group-sequential test of per-message value.

Routing is sticky per lead, so the lead is the unit of randomisation, and a lead's messages are
not independent trials. Each arm is therefore summarised by sums over its leads (``n`` messages
and ``y`` successes per lead: ``sum n``, ``sum n^2``, ``sum y``, ``sum y^2``, ``sum n y``), and a
per-message rate is a ratio metric ``R = sum y / sum n`` whose variance is the delta-method
(cluster-robust) ``sum (y - R n)^2 / (sum n)^2``. Messages without a lead count as leads of one
message, for which this is exactly the per-message binomial variance. The boundary of each look
comes from O'Brien-Fleming-type alpha spending on the information fraction
(:mod:`experiments.boundaries`). The core formulas are plain arithmetic, so
``bench/ab_simulation.py`` runs them on numpy arrays of replicates: the same code as the product.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, Literal, TypeVar

import numpy as np

from experiments.boundaries import look_boundary as look_boundary  # re-exported for the callers of decide()

Winner = Literal["control", "variant"]
Num = TypeVar("Num", float, np.ndarray)  # a float in the product, an array of replicates in the bench

# The specification's performance-score weights.
CLOSE_WEIGHT = 0.5
MEETING_WEIGHT = 0.3
REPLY_WEIGHT = 0.2
METRICS = ("replies", "meetings", "deals", "unsubscribes", "value")

SRM_P_THRESHOLD = 0.001  # below it the traffic split is broken
SRM_CHI2_CRITICAL = NormalDist().inv_cdf(1 - SRM_P_THRESHOLD / 2) ** 2  # 10.83: chi-square (1 df) at p = 0.001
TARGET_POWER = 0.8
DEFAULT_MINIMUM_EFFECT = 0.15  # the relative lift in per-message value a test is planned to detect
FIRST_DECISION_LOOK = 2
MAX_PLANNED_LOOKS = 12

_NORMAL = NormalDist()


@dataclass(frozen=True)
class LeadSums:
    """One count of one arm summed over its leads: ``sum y``, ``sum y^2`` and ``sum n y``.

    Floats in the product; numpy arrays of replicates in ``bench/ab_simulation.py``.
    """

    total: Any
    squares: Any
    cross: Any


@dataclass(frozen=True)
class ArmCounts:
    """One arm's funnel counts, and optionally their sums over leads.

    Without ``leads`` every message is its own lead. ``unkeyed_leads`` counts the messages
    reported without a lead key (already among ``leads``). Negative counts, or stage counts
    above ``messages``, are refused with :class:`ValueError`.
    """

    messages: int
    replies: int
    meetings: int
    deals: int
    revenue: float = 0.0
    unsubscribes: int = 0
    leads: int | None = None
    unkeyed_leads: int = 0
    messages_squared: int | None = None  # sum over leads of n^2
    sums: Mapping[str, LeadSums] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        stages = {"replies": self.replies, "meetings": self.meetings, "deals": self.deals}
        stages["unsubscribes"] = self.unsubscribes
        if self.messages < 0 or any(count < 0 for count in stages.values()):
            raise ValueError(f"Counts cannot be negative: {self}.")
        over = [name for name, count in stages.items() if count > self.messages]
        if over:
            raise ValueError(f"{', '.join(over)} cannot exceed messages ({self.messages}): {self}.")

    def _rate(self, count: int) -> float:
        return count / self.messages if self.messages else 0.0

    @property
    def reply_rate(self) -> float:
        """Replies per message (0 when no messages)."""
        return self._rate(self.replies)

    @property
    def meeting_rate(self) -> float:
        """Meetings per message (0 when no messages)."""
        return self._rate(self.meetings)

    @property
    def close_rate(self) -> float:
        """Deals per message (0 when no messages)."""
        return self._rate(self.deals)

    @property
    def unsubscribe_rate(self) -> float:
        """Unsubscribes per message (0 when no messages)."""
        return self._rate(self.unsubscribes)

    @property
    def weighted_score(self) -> float:
        """The specification's performance score: the mean per-message value."""
        return CLOSE_WEIGHT * self.close_rate + MEETING_WEIGHT * self.meeting_rate + REPLY_WEIGHT * self.reply_rate

    @property
    def is_nested(self) -> bool:
        """Whether the counts follow the funnel: deals <= meetings <= replies."""
        return self.deals <= self.meetings <= self.replies

    @property
    def lead_count(self) -> int:
        """The leads of the arm (its messages when they were not summed per lead)."""
        return self.messages if self.leads is None else self.leads

    @property
    def n_squared(self) -> int:
        """``sum n^2`` over the leads (the messages, when each is its own lead)."""
        return self.messages if self.messages_squared is None else self.messages_squared

    def sums_of(self, metric: str) -> LeadSums:
        """The per-lead sums of ``metric`` (one of :data:`METRICS`), derived when not given."""
        if self.sums is not None:
            return self.sums[metric]
        if metric != "value":
            count = float(getattr(self, metric))
            return LeadSums(count, count, count)
        total = self.weighted_score * self.messages
        return LeadSums(total, _single_message_value_squares(self), total)


def _single_message_value_squares(arm: ArmCounts) -> float:
    """``sum v^2`` over single-message leads: exact for nested counts, independent stages otherwise.

    Counts that are not nested fall back to ``n (sum w_i^2 p_i (1 - p_i) + mean^2)``, which
    ignores the correlation between the stages and so understates the variance somewhat.
    """
    n = arm.messages
    if arm.is_nested:
        return message_value_squares(arm.replies, arm.meetings, arm.deals)
    weighted = ((CLOSE_WEIGHT, arm.close_rate), (MEETING_WEIGHT, arm.meeting_rate), (REPLY_WEIGHT, arm.reply_rate))
    return n * (sum(w * w * p * (1 - p) for w, p in weighted) + arm.weighted_score**2)


def message_value_squares(replies: Num, meetings: Num, deals: Num) -> Num:
    """``sum v^2`` over single messages of a nested funnel: each message is worth 0, 0.2, 0.5 or 1."""
    return (
        REPLY_WEIGHT**2 * (replies - meetings)
        + (REPLY_WEIGHT + MEETING_WEIGHT) ** 2 * (meetings - deals)
        + (REPLY_WEIGHT + MEETING_WEIGHT + CLOSE_WEIGHT) ** 2 * deals
    )


@dataclass(frozen=True)
class Decision:
    """What the A/B test says at one look, with the statistics behind it.

    ``winner`` is ``"variant"`` only when ``promote`` is true; ``"control"`` when the variant is
    significantly worse; ``None`` when undecided, blocked by a guardrail or ``stopped`` (a broken
    test). ``improvement_percentage`` is the seed's ``(variant - control) / control * 100`` of the
    scores. The ``additional_*_needed`` figures are set only while undecided.
    """

    promote: bool
    winner: Winner | None
    improvement_percentage: float | None
    control_score: float
    variant_score: float
    z: float | None
    boundary: float | None
    srm_p_value: float | None
    look: int
    planned_looks: int
    stopped: bool
    reasons: list[str]
    additional_messages_needed: int | None
    additional_leads_needed: int | None = None
    information_fraction: float | None = None
    control_leads: int = 0
    variant_leads: int = 0
    unkeyed_leads: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The decision as a JSON-serialisable dict (for ``Experiment.decision`` and API answers)."""
        return asdict(self)


# --- The core formulas (floats or numpy arrays) -------------------------------------------------


def ratio_mean_and_variance(sums: LeadSums, messages: Num, messages_squared: Num) -> tuple[Num, Num]:
    """A ratio metric ``R = sum y / sum n`` and its delta-method variance ``sum (y - R n)^2 / (sum n)^2``.

    Works element-wise on numpy arrays (replicates); ``messages`` must not be zero.
    """
    mean = sums.total / messages
    spread = sums.squares - 2 * mean * sums.cross + mean * mean * messages_squared
    spread = (spread + abs(spread)) / 2  # rounding can leave a hair below zero
    return mean, spread / (messages * messages)


def ratio_z(control: tuple[Num, Num], variant: tuple[Num, Num]) -> Num:
    """The z of the variant's ratio over the control's, from each arm's (mean, variance)."""
    return (variant[0] - control[0]) / (variant[1] + control[1]) ** 0.5


def srm_chi2(control_leads: Num, variant_leads: Num, expected_variant_share: float) -> Num:
    """The chi-square (1 df) of the leads' split against the planned share."""
    total = control_leads + variant_leads
    expected_v = total * expected_variant_share
    expected_c = total - expected_v
    return (variant_leads - expected_v) ** 2 / expected_v + (control_leads - expected_c) ** 2 / expected_c


def verdict_codes(z: Any, boundary: Any, *, decidable: Any, stopped: Any, blocked: Any) -> np.ndarray:
    """Each look's verdict: 1 promote, -1 the control wins, 0 none (element-wise).

    Nothing is decided before a decidable look or in a stopped test; a promotion that a
    guardrail ``blocked`` is no verdict. ``z`` may be NaN (undefined): no verdict.
    """
    allowed = np.logical_and(decidable, np.logical_not(stopped))
    promote = np.logical_and(np.greater_equal(z, boundary), np.logical_not(blocked))
    code = np.where(promote, 1, np.where(np.less_equal(z, np.negative(boundary)), -1, 0))
    return np.asarray(np.where(allowed, code, 0))


def arm_moments(arm: ArmCounts, metric: str) -> tuple[float, float]:
    """One arm's ratio mean and variance for ``metric``; (0, 0) for an empty arm."""
    if arm.messages == 0:
        return 0.0, 0.0
    return ratio_mean_and_variance(arm.sums_of(metric), float(arm.messages), float(arm.n_squared))


def metric_z(control: ArmCounts, variant: ArmCounts, metric: str = "value") -> float | None:
    """The cluster-robust z of the variant over the control for ``metric``; ``None`` when undefined."""
    if control.messages == 0 or variant.messages == 0:
        return None
    moments_c, moments_v = arm_moments(control, metric), arm_moments(variant, metric)
    if moments_c[1] + moments_v[1] <= 0:
        return None
    return float(ratio_z(moments_c, moments_v))


def value_z(control: ArmCounts, variant: ArmCounts) -> float | None:
    """The z of the variant's mean per-message value over the control's (cluster-robust)."""
    return metric_z(control, variant, "value")


def srm_p_value(control: ArmCounts, variant: ArmCounts, expected_variant_share: float) -> float | None:
    """The p-value of a sample-ratio mismatch of the leads; ``None`` when there are none."""
    if control.lead_count + variant.lead_count == 0:
        return None
    chi2 = srm_chi2(float(control.lead_count), float(variant.lead_count), expected_variant_share)
    return math.erfc(math.sqrt(chi2 / 2))


def improvement_percentage(control_score: float, variant_score: float) -> float | None:
    """The seed's relative improvement ``(variant - control) / control * 100``; ``None`` for a zero control."""
    if control_score == 0:
        return None
    return (variant_score - control_score) / control_score * 100


def guardrail_critical(guardrail_alpha: float = 0.01) -> float:
    """The one-sided critical z of the guardrails."""
    return _NORMAL.inv_cdf(1 - guardrail_alpha)


def guardrail_reasons(control: ArmCounts, variant: ArmCounts, guardrail_alpha: float = 0.01) -> list[str]:
    """Why a promotion must be blocked: a significant drop in close rate or rise in unsubscribes.

    One-sided cluster-robust z tests at ``guardrail_alpha``; an empty list when neither fires.
    """
    critical = guardrail_critical(guardrail_alpha)
    reasons: list[str] = []
    close_z = metric_z(control, variant, "deals")
    if close_z is not None and close_z <= -critical:
        reasons.append(
            f"guardrail: the variant's close rate {variant.close_rate:.2%} is significantly below the control's "
            f"{control.close_rate:.2%} (z = {close_z:.2f} <= -{critical:.2f})"
        )
    unsub_z = metric_z(control, variant, "unsubscribes")
    if unsub_z is not None and unsub_z >= critical:
        reasons.append(
            f"guardrail: the variant's unsubscribe rate {variant.unsubscribe_rate:.2%} is significantly above the "
            f"control's {control.unsubscribe_rate:.2%} (z = {unsub_z:.2f} >= {critical:.2f})"
        )
    return reasons


def naive_rule(control: ArmCounts, variant: ArmCounts, threshold_pct: float = 5.0) -> bool:
    """The specification's rule: promote when the variant's score is more than ``threshold_pct`` % better.

    Kept for comparison (``bench/ab_simulation.py``): applied at every look it promotes a model
    that is no better far more often than 5 %.
    """
    improvement = improvement_percentage(control.weighted_score, variant.weighted_score)
    return improvement is not None and improvement > threshold_pct


# --- Planning -----------------------------------------------------------------------------------


def per_lead_variance(arm: ArmCounts, metric: str = "value") -> float:
    """The variance one lead contributes to the arm's ratio: ``leads * Var(R)``."""
    return arm_moments(arm, metric)[1] * arm.lead_count


def additional_leads_needed(
    control: ArmCounts,
    variant: ArmCounts,
    *,
    planned_looks: int,
    expected_variant_share: float,
    alpha: float = 0.05,
    minimum_effect: float = DEFAULT_MINIMUM_EFFECT,
) -> int | None:
    """More leads (both arms) for 80 % power at the planned relative ``minimum_effect``; ``None`` if unknown.

    ``N = (b_K + z_power)^2 (s_v^2 / s + s_c^2 / (1 - s)) / effect^2``, with the per-lead
    variances ``s^2`` measured so far (the control's for an empty variant) and ``b_K`` the final
    boundary of equally spaced looks, which carries most of the cost of looking ``K`` times.
    """
    if control.messages == 0:
        return None
    spread_c = per_lead_variance(control)
    spread_v = per_lead_variance(variant) if variant.messages else spread_c
    effect = minimum_effect * arm_moments(control, "value")[0]
    share = expected_variant_share
    spread = spread_v / share + spread_c / (1 - share)
    if effect <= 0 or spread <= 0:
        return None
    z_sum = (look_boundary(planned_looks, planned_looks, alpha=alpha) or 0.0) + _NORMAL.inv_cdf(TARGET_POWER)
    total = math.ceil(z_sum**2 * spread / effect**2)
    return max(total - control.lead_count - variant.lead_count, 0)


# --- The decision -------------------------------------------------------------------------------


def _validate_design(look: int, planned_looks: int, expected_variant_share: float, alpha: float) -> None:
    """Refuse a design the test cannot run (configuration errors, not data)."""
    if not 1 <= planned_looks <= MAX_PLANNED_LOOKS:
        raise ValueError(f"planned_looks must be between 1 and {MAX_PLANNED_LOOKS}, not {planned_looks}.")
    if not 0 < alpha <= 0.2:
        raise ValueError(f"alpha must be above 0 and at most 0.2, not {alpha}.")
    if look < 0:
        raise ValueError(f"look cannot be negative, not {look}.")
    if not 0 < expected_variant_share < 1:
        raise ValueError(f"expected_variant_share must be between 0 and 1, not {expected_variant_share}.")


def _blocking_reasons(
    control: ArmCounts, variant: ArmCounts, look: int, planned_looks: int, srm_p: float | None, share: float
) -> list[str]:
    """Reasons the data or the look cannot support a decision (an empty list when they can)."""
    arms = (("control", control), ("variant", variant))
    reasons = [f"the {name} arm has no messages yet" for name, arm in arms if arm.messages == 0]
    first = min(FIRST_DECISION_LOOK, planned_looks)
    if look < first:
        reasons.append(f"no decision before look {first} (this is look {look}): too early to act on")
    if srm_p is not None and srm_p < SRM_P_THRESHOLD:
        reasons.append(
            f"sample-ratio mismatch (p = {srm_p:.2g}): {variant.lead_count} variant leads of "
            f"{control.lead_count + variant.lead_count} against a planned {share:.0%}; the test is broken"
        )
    return reasons


def _why(code: int, z: float | None, boundary: float | None) -> str:
    """The value test's verdict in words."""
    if z is None or boundary is None:
        return "the value test is undefined: no variance in per-message value yet"
    if code == 1 or z >= boundary:
        return f"the variant's value is significantly higher (z = {z:.2f} >= boundary {boundary:.2f})"
    if code == -1:
        return f"the variant's value is significantly lower (z = {z:.2f} <= -{boundary:.2f})"
    return f"not significant yet (z = {z:.2f}, boundary +/-{boundary:.2f})"


def _verdict(
    control: ArmCounts,
    variant: ArmCounts,
    z: float | None,
    boundary: float | None,
    blocking: bool,
    guardrail_alpha: float,
) -> tuple[Winner | None, list[str]]:
    """The verdict (through :func:`verdict_codes`, as the simulation) and its reasons."""
    guards = guardrail_reasons(control, variant, guardrail_alpha)
    blocked = any("close rate" in reason or "unsubscribe" in reason for reason in guards)
    code = int(
        verdict_codes(
            math.nan if z is None else z,
            math.inf if boundary is None else boundary,
            decidable=not blocking,
            stopped=False,
            blocked=blocked,
        )
    )
    why = _why(code, z, boundary)
    if code == 0 and blocked and z is not None and boundary is not None and z >= boundary:
        return None, [why, *guards, "promotion blocked by a guardrail; the test continues"]
    return {1: "variant", -1: "control"}.get(code), [why, *guards]  # type: ignore[return-value]


def decide(
    control: ArmCounts,
    variant: ArmCounts,
    *,
    look: int,
    planned_looks: int = 8,
    expected_variant_share: float = 0.1,
    alpha: float = 0.05,
    guardrail_alpha: float = 0.01,
    fractions: list[float] | None = None,
    minimum_effect: float = DEFAULT_MINIMUM_EFFECT,
) -> Decision:
    """Decide the A/B test at ``look`` (1-based; 0 means no complete look yet) of ``planned_looks``.

    ``fractions`` are the information fractions of looks ``1..look`` (equally spaced by
    default). Raises :class:`ValueError` for a design it cannot run, never for the data.
    """
    share = expected_variant_share
    _validate_design(look, planned_looks, share, alpha)
    z, boundary = value_z(control, variant), look_boundary(look, planned_looks, fractions, alpha)
    srm_p = srm_p_value(control, variant, share)
    stopped = srm_p is not None and srm_p < SRM_P_THRESHOLD
    reasons = _blocking_reasons(control, variant, look, planned_looks, srm_p, share)
    winner, why = _verdict(control, variant, z, boundary, bool(reasons), guardrail_alpha)
    reasons = reasons or why
    if look > planned_looks:
        reasons.append(f"look {look} is past the {planned_looks} planned: no alpha is left to spend")
    leads = None
    if winner is None and not stopped:
        leads = additional_leads_needed(
            control,
            variant,
            planned_looks=planned_looks,
            expected_variant_share=share,
            alpha=alpha,
            minimum_effect=minimum_effect,
        )
    statistics = {"z": z, "boundary": boundary, "srm_p_value": srm_p, "look": look, "planned_looks": planned_looks}
    fraction = fractions[-1] if fractions else None
    return _decision(control, variant, winner, stopped, reasons, leads, fraction, statistics)


def _decision(
    control: ArmCounts,
    variant: ArmCounts,
    winner: Winner | None,
    stopped: bool,
    reasons: list[str],
    leads: int | None,
    fraction: float | None,
    statistics: dict[str, Any],
) -> Decision:
    """The :class:`Decision` of a look, with the scores, leads and messages behind it."""
    total_leads = control.lead_count + variant.lead_count
    per_lead = (control.messages + variant.messages) / total_leads if total_leads else 1.0
    return Decision(
        promote=winner == "variant",
        winner=winner,
        improvement_percentage=improvement_percentage(control.weighted_score, variant.weighted_score),
        control_score=control.weighted_score,
        variant_score=variant.weighted_score,
        stopped=stopped,
        reasons=reasons,
        additional_messages_needed=None if leads is None else math.ceil(leads * per_lead),
        additional_leads_needed=leads,
        information_fraction=fraction,
        control_leads=control.lead_count,
        variant_leads=variant.lead_count,
        unkeyed_leads=control.unkeyed_leads + variant.unkeyed_leads,
        **statistics,
    )
