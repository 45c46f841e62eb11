"""The A/B test's statistics (``experiments.stats``): pure functions over counts, no database."""

import importlib.util
import itertools
import json
import math
import sys
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest

from experiments.boundaries import equal_fractions, obf_spending, spending_boundaries
from experiments.stats import (
    ArmCounts,
    Decision,
    LeadSums,
    additional_leads_needed,
    arm_moments,
    decide,
    improvement_percentage,
    look_boundary,
    naive_rule,
    srm_p_value,
    value_z,
)

ROOT = Path(__file__).resolve().parents[2]

# The benchmark's control: 9,000 messages, reply 10 %, meeting 4 %, close 2 %; mean value 0.042.
CONTROL = ArmCounts(messages=9000, replies=900, meetings=360, deals=180)
# Its per-message value: E[v^2] = 0.04 * 0.06 + 0.25 * 0.02 + 1.0 * 0.02 = 0.0274, minus 0.042^2.
CONTROL_VARIANCE = 0.0274 - 0.042**2


def arm(messages: int, reply: float, meeting: float, close: float, unsubscribe: float = 0.0) -> ArmCounts:
    """An arm with the given rates (rounded to whole messages)."""
    return ArmCounts(
        messages=messages,
        replies=round(messages * reply),
        meetings=round(messages * meeting),
        deals=round(messages * close),
        unsubscribes=round(messages * unsubscribe),
    )


# --- Counts and scores --------------------------------------------------------------------------


def test_it_weights_the_performance_score_as_the_specification_does() -> None:
    counts = ArmCounts(messages=1000, replies=100, meetings=40, deals=20)

    assert (counts.reply_rate, counts.meeting_rate, counts.close_rate) == (0.1, 0.04, 0.02)
    assert counts.weighted_score == pytest.approx(0.5 * 0.02 + 0.3 * 0.04 + 0.2 * 0.1)


def test_it_gives_an_empty_arm_zero_rates() -> None:
    empty = ArmCounts(messages=0, replies=0, meetings=0, deals=0)

    assert (empty.reply_rate, empty.meeting_rate, empty.close_rate, empty.weighted_score) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "counts",
    [
        {"messages": -1, "replies": 0, "meetings": 0, "deals": 0},
        {"messages": 10, "replies": 0, "meetings": 0, "deals": -1},
        {"messages": 10, "replies": 11, "meetings": 0, "deals": 0},
        {"messages": 10, "replies": 5, "meetings": 0, "deals": 0, "unsubscribes": 12},
    ],
)
def test_it_refuses_negative_counts_and_stages_above_the_messages_sent(counts: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"negative|exceed"):
        ArmCounts(**counts)


def test_it_computes_the_variance_of_a_nested_funnel_from_its_four_values() -> None:
    mean, variance_of_mean = arm_moments(CONTROL, "value")

    assert mean == pytest.approx(0.042)
    assert variance_of_mean * CONTROL.messages == pytest.approx(CONTROL_VARIANCE)  # 0.025636 per message


def test_it_falls_back_to_the_independent_sum_variance_when_the_counts_are_not_nested() -> None:
    # More meetings than replies: not the product's funnel.
    counts = ArmCounts(messages=100, replies=10, meetings=12, deals=2)

    _, variance_of_mean = arm_moments(counts, "value")

    assert variance_of_mean * counts.messages == pytest.approx(
        0.25 * 0.02 * 0.98 + 0.09 * 0.12 * 0.88 + 0.04 * 0.1 * 0.9
    )  # 0.018004


def test_it_computes_the_two_sample_z_by_hand_on_a_small_case() -> None:
    control = ArmCounts(messages=100, replies=10, meetings=4, deals=2)  # mean 0.042, variance 0.025636
    variant = ArmCounts(messages=100, replies=20, meetings=8, deals=4)  # mean 0.084, variance 0.0548 - 0.084^2

    z = value_z(control, variant)

    assert z == pytest.approx(0.042 / math.sqrt((0.025636 + 0.047744) / 100))
    assert z == pytest.approx(1.5505, abs=1e-4)


# --- Leads ---------------------------------------------------------------------------------------


def clustered(leads: list[tuple[int, int]]) -> ArmCounts:
    """An arm of leads given as (messages, replies), summed per lead as the database does."""
    n = sum(m for m, _ in leads)
    y = sum(r for _, r in leads)
    sums = {
        "replies": LeadSums(y, sum(r * r for _, r in leads), sum(m * r for m, r in leads)),
        **{name: LeadSums(0, 0, 0) for name in ("meetings", "deals", "unsubscribes")},
        "value": LeadSums(0.2 * y, sum((0.2 * r) ** 2 for _, r in leads), sum(m * 0.2 * r for m, r in leads)),
    }
    return ArmCounts(
        messages=n,
        replies=y,
        meetings=0,
        deals=0,
        leads=len(leads),
        messages_squared=sum(m * m for m, _ in leads),
        sums=sums,
    )


def test_a_clustered_arm_has_a_larger_variance_than_its_messages_alone() -> None:
    # Two leads of 3 messages (one answered all three, one none) and two of 1 (one answered).
    leads = clustered([(3, 3), (3, 0), (1, 0), (1, 1)])
    messages = ArmCounts(messages=8, replies=4, meetings=0, deals=0)

    # R = 4 / 8; sum (y - R n)^2 = 1.5^2 + 1.5^2 + 0.5^2 + 0.5^2 = 5; variance 5 / 8^2.
    assert arm_moments(leads, "replies") == pytest.approx((0.5, 5 / 64))
    # Eight independent messages: R (1 - R) / n = 0.25 / 8.
    assert arm_moments(messages, "replies") == pytest.approx((0.5, 0.25 / 8))


def test_leads_of_one_message_give_exactly_the_per_message_variance() -> None:
    leads = clustered([(1, 1), (1, 0), (1, 0), (1, 1), (1, 0)])
    messages = ArmCounts(messages=5, replies=2, meetings=0, deals=0)

    assert arm_moments(leads, "replies") == pytest.approx(arm_moments(messages, "replies"))
    assert arm_moments(leads, "value") == pytest.approx(arm_moments(messages, "value"))


def test_the_same_rates_are_less_significant_when_the_messages_cluster_in_leads() -> None:
    control = clustered([(1, 0)] * 600 + [(1, 1)] * 60)
    per_message = clustered([(1, 1)] * 30 + [(1, 0)] * 120)  # 20 % of 150 messages, 150 leads
    per_lead = clustered([(5, 5)] * 6 + [(5, 0)] * 24)  # the same messages in 30 leads of 5

    z_messages, z_leads = value_z(control, per_message), value_z(control, per_lead)

    assert z_messages is not None and z_leads is not None and z_leads < z_messages / 2


def test_the_sample_ratio_check_counts_leads_not_messages() -> None:
    control = clustered([(1, 0)] * 900)
    chatty = clustered([(5, 0)] * 100)  # 100 leads of 5 messages: 10 % of the leads, 36 % of the messages
    few = clustered([(1, 0)] * 140)  # 140 of 1,040 leads against a planned 10 %

    assert srm_p_value(control, chatty, 0.1) == pytest.approx(1.0)
    p_few = srm_p_value(control, few, 0.1)
    assert p_few is not None and p_few < 0.001


# --- The boundary ---------------------------------------------------------------------------------


def test_its_two_sided_boundaries_for_five_equal_looks_are_the_published_lan_demets_ones() -> None:
    bounds = spending_boundaries(equal_fractions(5), 0.05, symmetric=True)

    assert bounds == pytest.approx((4.877, 3.357, 2.680, 2.290, 2.031), abs=1e-3)


def test_its_two_sided_boundaries_for_four_equal_looks_are_the_published_ones() -> None:
    bounds = spending_boundaries(equal_fractions(4), 0.05, symmetric=True)

    assert bounds == pytest.approx((4.333, 2.963, 2.359, 2.014), abs=1e-3)


def test_a_single_look_design_is_the_fixed_sample_one_sided_test() -> None:
    assert spending_boundaries([1.0], 0.05) == pytest.approx((1.6449,), abs=1e-4)
    assert look_boundary(1, 1) == pytest.approx(1.6449, abs=1e-4)


def test_the_spending_function_spends_nothing_at_the_start_and_everything_at_the_end() -> None:
    assert (obf_spending(0.0, 0.05), obf_spending(1.0, 0.05)) == (0.0, 0.05)
    assert obf_spending(0.5, 0.05) == pytest.approx(math.erfc(1.96 / math.sqrt(0.5) / math.sqrt(2)), rel=1e-3)
    assert obf_spending(0.25, 0.05) < obf_spending(0.5, 0.05) < 0.05


def test_the_boundary_falls_from_look_to_look_and_ends_near_the_fixed_sample_one() -> None:
    bounds = [look_boundary(look, 8) or 0.0 for look in range(1, 9)]

    assert all(earlier > later for earlier, later in itertools.pairwise(bounds))
    assert bounds[0] == pytest.approx(5.421, abs=1e-3) and bounds[-1] == pytest.approx(1.778, abs=1e-3)


def crossing_rate(fractions: list[float], bounds: tuple[float, ...], paths: int = 400_000) -> float:
    """Monte Carlo: how often a statistic with no difference crosses the boundary at some look."""
    rng = np.random.default_rng(7)
    steps = np.diff([0.0, *fractions])
    walk = np.cumsum(rng.standard_normal((paths, len(fractions))) * np.sqrt(steps), axis=1)
    z = walk / np.sqrt(fractions)
    return float((z >= np.array(bounds)).any(axis=1).mean())


@pytest.mark.parametrize(
    "fractions",
    [[0.05, 0.1, 0.4, 0.45, 0.7, 0.75, 0.9, 1.0], [0.3, 0.35, 0.4, 0.95, 1.0], list(equal_fractions(8))],
)
def test_unequal_looks_keep_the_error_rate(fractions: list[float]) -> None:
    bounds = spending_boundaries(fractions, 0.05)

    # 400,000 paths: the Monte Carlo standard error is 0.00035.
    assert crossing_rate(fractions, bounds) == pytest.approx(0.05, abs=0.0015)


def test_unequal_looks_get_other_boundaries_than_equal_ones() -> None:
    unequal, equal = look_boundary(3, 8, [0.05, 0.1, 0.6]), look_boundary(3, 8)

    assert unequal is not None and equal is not None and unequal < equal  # more information at look 3: a lower bar


def test_a_look_that_adds_no_information_keeps_the_boundary() -> None:
    bounds = spending_boundaries([0.2, 0.5, 0.5, 1.0], 0.05)

    assert bounds[1] == bounds[2]


def test_information_fractions_cannot_decrease() -> None:
    with pytest.raises(ValueError, match="cannot decrease"):
        spending_boundaries([0.5, 0.4], 0.05)


@pytest.mark.parametrize(
    "design",
    [
        {"look": 2, "planned_looks": 13},
        {"look": 2, "planned_looks": 0},
        {"look": 2, "alpha": 0.5},
        {"look": -1},
        {"look": 2, "expected_variant_share": 1.0},
    ],
)
def test_it_refuses_a_design_it_has_no_boundary_for(design: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        decide(CONTROL, arm(1000, 0.1, 0.04, 0.02), **design)


# --- Decisions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("look", [0, 1])
def test_it_never_decides_before_the_second_look(look: int) -> None:
    far_better = arm(1000, 0.3, 0.15, 0.08)

    decision = decide(CONTROL, far_better, look=look)

    assert (decision.promote, decision.winner, decision.stopped) == (False, None, False)
    assert decision.z is not None and decision.z > 6  # the statistic is still reported
    assert "no decision before look 2" in decision.reasons[0]


def test_it_promotes_the_variant_when_z_crosses_the_boundary() -> None:
    variant = arm(1000, 0.15, 0.06, 0.03)  # z about 3.3

    decision = decide(CONTROL, variant, look=8)

    assert (decision.promote, decision.winner) == (True, "variant")
    assert decision.z is not None and decision.boundary is not None and decision.z >= decision.boundary
    assert decision.additional_messages_needed is None


def test_the_same_z_promotes_at_the_last_look_but_not_at_an_early_one() -> None:
    variant = arm(1000, 0.13, 0.052, 0.026)  # z about 2.1: between 1.778 (look 8) and 3.002 (look 3)

    early, last = decide(CONTROL, variant, look=3), decide(CONTROL, variant, look=8)

    assert early.z == pytest.approx(2.115, abs=0.01)
    assert (early.promote, early.winner) == (False, None)
    assert "not significant yet" in early.reasons[0]
    assert early.additional_leads_needed is not None and early.additional_leads_needed > 0
    assert (last.promote, last.winner) == (True, "variant")


def test_the_variant_loses_when_it_is_far_worse() -> None:
    decision = decide(CONTROL, arm(1000, 0.05, 0.02, 0.01), look=8)

    assert (decision.promote, decision.winner, decision.stopped) == (False, "control", False)
    assert decision.z is not None and decision.boundary is not None and decision.z <= -decision.boundary
    assert "significantly lower" in decision.reasons[0]


def test_a_sample_ratio_mismatch_stops_the_test() -> None:
    variant = arm(2000, 0.3, 0.15, 0.08)  # far better, but 18 % of traffic against a planned 10 %

    decision = decide(CONTROL, variant, look=8)

    assert (decision.promote, decision.winner, decision.stopped) == (False, None, True)
    assert decision.srm_p_value is not None and decision.srm_p_value < 0.001
    assert any("the test is broken" in reason for reason in decision.reasons)
    assert decision.additional_messages_needed is None


def test_it_computes_the_sample_ratio_p_value_from_a_one_degree_chi_square() -> None:
    # 130 variant messages of 1,000 against 100 expected: chi2 = 900/100 + 900/900 = 10.
    control = ArmCounts(messages=870, replies=0, meetings=0, deals=0)
    variant = ArmCounts(messages=130, replies=0, meetings=0, deals=0)

    p = srm_p_value(control, variant, 0.1)

    assert p == pytest.approx(math.erfc(math.sqrt(5)))  # 0.00157: suspicious, not broken
    assert not decide(control, variant, look=2).stopped


def test_the_close_rate_guardrail_blocks_a_promotion_the_value_test_would_make() -> None:
    # Many more replies and meetings, but the deals collapse from 2 % to 0.5 %.
    variant = ArmCounts(messages=1000, replies=500, meetings=300, deals=5)

    decision = decide(CONTROL, variant, look=8)

    assert decision.z is not None and decision.boundary is not None and decision.z >= decision.boundary
    assert (decision.promote, decision.winner, decision.stopped) == (False, None, False)
    assert any("close rate" in reason for reason in decision.reasons)
    assert "promotion blocked by a guardrail" in decision.reasons[-1]


def test_the_unsubscribe_guardrail_blocks_a_promotion_the_value_test_would_make() -> None:
    control = arm(9000, 0.1, 0.04, 0.02, unsubscribe=0.001)
    variant = arm(1000, 0.15, 0.06, 0.03, unsubscribe=0.03)

    decision = decide(control, variant, look=8)

    assert decision.z is not None and decision.boundary is not None and decision.z >= decision.boundary
    assert (decision.promote, decision.winner) == (False, None)
    assert any("unsubscribe rate" in reason for reason in decision.reasons)


def test_a_guardrail_that_does_not_fire_lets_the_promotion_through() -> None:
    control = arm(9000, 0.1, 0.04, 0.02, unsubscribe=0.01)
    variant = arm(1000, 0.15, 0.06, 0.03, unsubscribe=0.011)

    assert decide(control, variant, look=8).promote


@pytest.mark.parametrize(
    "variant",
    [ArmCounts(messages=0, replies=0, meetings=0, deals=0), ArmCounts(messages=3, replies=1, meetings=0, deals=0)],
)
def test_empty_arms_leave_the_test_undecided_with_a_reason(variant: ArmCounts) -> None:
    empty = ArmCounts(messages=0, replies=0, meetings=0, deals=0)

    decision = decide(empty, variant, look=4)

    assert (decision.promote, decision.winner, decision.z, decision.improvement_percentage) == (False, None, None, None)
    assert "the control arm has no messages yet" in decision.reasons
    assert decision.additional_messages_needed is None


def test_an_arm_without_any_outcome_gives_no_z_and_no_exception() -> None:
    silent = ArmCounts(messages=1000, replies=0, meetings=0, deals=0)

    decision = decide(ArmCounts(messages=9000, replies=0, meetings=0, deals=0), silent, look=5)

    assert (decision.promote, decision.winner, decision.z) == (False, None, None)
    assert "undefined" in decision.reasons[0]


def test_it_reports_the_improvement_percentage_as_the_seed_does() -> None:
    control = ArmCounts(messages=1000, replies=100, meetings=50, deals=20)  # score 0.045
    variant = ArmCounts(messages=1000, replies=120, meetings=60, deals=20)  # score 0.052

    decision = decide(control, variant, look=2, expected_variant_share=0.5)

    assert decision.control_score == pytest.approx(0.045)
    assert decision.variant_score == pytest.approx(0.052)
    assert decision.improvement_percentage == pytest.approx(15.56, abs=0.01)
    assert improvement_percentage(0.045, 0.052) == pytest.approx(15.56, abs=0.01)
    assert improvement_percentage(0.0, 0.052) is None


def test_it_estimates_the_leads_the_planned_power_still_needs() -> None:
    # The planned +15 % lift, at the final boundary 1.778 and 80 % power, 90/10, one message a lead.
    variant = arm(1000, 0.1, 0.04, 0.02)
    spread = CONTROL_VARIANCE / 0.1 + CONTROL_VARIANCE / 0.9
    total = math.ceil((1.7783 + NormalDist().inv_cdf(0.8)) ** 2 * spread / (0.15 * 0.042) ** 2)

    needed = additional_leads_needed(CONTROL, variant, planned_looks=8, expected_variant_share=0.1)

    assert needed == pytest.approx(total - 10_000, abs=5)  # about 39,000 more
    assert decide(CONTROL, variant, look=2).additional_leads_needed == needed
    assert decide(CONTROL, variant, look=2).additional_messages_needed == needed


def test_its_decision_is_json_serialisable() -> None:
    decision = decide(CONTROL, arm(1000, 0.15, 0.06, 0.03), look=8)

    stored = json.loads(json.dumps(decision.as_dict()))

    assert stored["winner"] == "variant" and stored["promote"] is True
    assert set(stored) == set(Decision.__dataclass_fields__)


# --- The specification's rule -------------------------------------------------------------------


def test_the_naive_rule_promotes_only_above_five_percent_better() -> None:
    control = ArmCounts(messages=1000, replies=100, meetings=50, deals=20)  # 0.045
    slightly = ArmCounts(messages=1000, replies=100, meetings=50, deals=22)  # 0.046: +2.2 %
    clearly = ArmCounts(messages=1000, replies=110, meetings=55, deals=22)  # 0.0495: +10 %

    assert not naive_rule(control, slightly)
    assert naive_rule(control, clearly)
    assert naive_rule(control, slightly, threshold_pct=2.0)
    assert not naive_rule(ArmCounts(messages=10, replies=0, meetings=0, deals=0), clearly)


# --- The benchmark ------------------------------------------------------------------------------


def test_the_ab_simulation_runs_on_a_few_replicates(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("ab_simulation", ROOT / "bench" / "ab_simulation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        result = module.main(["--replicates", "20", "--check", "2"])
    finally:
        sys.modules.pop(spec.name, None)

    output = capsys.readouterr().out
    assert result in (0, 1)
    assert "m=5, k=0.3" in output and "false promotion <= 5 %" in output and "+15 %" in output
    assert "decide() agreed with the numpy path on 192 looks" in output
