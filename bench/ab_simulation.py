"""How often the A/B test promotes: the sequential test of ``experiments.stats`` against the seed's rule.

Usage: ``python bench/ab_simulation.py [--replicates N] [--seed S] [--check M]`` (default 10,000
replicates, a fixed seed, and ``decide()`` re-run on 200 replicates per scenario).

The scenario is the experiments' default design: a 90/10 split with 1,000 variant (and 9,000
control) messages a week, looked at weekly for 8 weeks. The control replies to 10 % of messages,
books a meeting from 4 % and closes 2 %; the funnel is nested, so each arm's week is one
multinomial draw of {no reply, reply only, reply and meeting, deal}. The variant is the same (A/A),
10 % worse or 15 % better in per-message value (all three rates scaled by 0.9 or 1.15).

For every replicate the cumulative counts at each look are judged three ways on the same draws:

* the sequential test: the first look at which ``decide()`` promotes, rejects the variant or
  stops the test ends it; the table counts the replicates ending in a promotion;
* the seed's rule (promote when the score is more than 5 % better) applied once, after week 1;
* the seed's rule re-checked weekly, promoting at the first look where it passes.

The sequential test runs in numpy with the same formulas as ``decide()`` (so 10,000 replicates
take seconds), and ``decide()`` itself is run on a sample of replicates at every look: any
disagreement in z, boundary, verdict or the naive rule stops the script with an error.

Targets: false promotion in A/A <= 5 %, promotion of a 10 % worse variant <= 1 %, power at
+15 % >= 80 %. The script prints a table with PASS/FAIL and exits 0 only when all are met.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

# Runnable as a plain script from anywhere: the project root makes ``experiments`` importable.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.stats import (  # noqa: E402
    CLOSE_WEIGHT,
    FIRST_DECISION_LOOK,
    MEETING_WEIGHT,
    REPLY_WEIGHT,
    SRM_P_THRESHOLD,
    ArmCounts,
    decide,
    naive_rule,
    obf_boundary,
)

Counts = NDArray[np.int64]
Floats = NDArray[np.float64]
Flags = NDArray[np.bool_]

LOOKS = 8
VARIANT_SHARE = 0.1
VARIANT_PER_WEEK = 1_000
CONTROL_PER_WEEK = 9_000
CONTROL_RATES = (0.10, 0.04, 0.02)  # reply, meeting, close
NAIVE_THRESHOLD_PCT = 5.0
GUARDRAIL_Z = 2.3263478740408408  # z_{0.99}, decide()'s default guardrail_alpha = 0.01
DEFAULT_SEED = 20_240_601
# A z this close to a boundary could fall either side by float rounding: not a disagreement.
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Scenario:
    """A true effect on the variant's rates, and the target its promotion rate must meet."""

    name: str
    scale: float
    target: str
    meets: Callable[[float], bool]


SCENARIOS = (
    Scenario("A/A (no difference)", 1.0, "false promotion <= 5 %", lambda rate: rate <= 0.05),
    Scenario("variant 10 % worse", 0.9, "promotion <= 1 %", lambda rate: rate <= 0.01),
    Scenario("variant +15 %", 1.15, "power >= 80 %", lambda rate: rate >= 0.80),
)


@dataclass(frozen=True)
class Result:
    """One scenario's rates over the replicates."""

    scenario: Scenario
    replicates: int
    sequential: float
    rejected: float
    naive_week1: float
    naive_weekly: float
    mean_look: float
    checked: int

    @property
    def passed(self) -> bool:
        """Whether the sequential test meets the scenario's target."""
        return self.scenario.meets(self.sequential)


# --- Drawing ------------------------------------------------------------------------------------


def funnel_probabilities(reply: float, meeting: float, close: float) -> Floats:
    """The nested funnel as four exclusive outcomes: none, reply only, reply and meeting, deal."""
    return np.array([1 - reply, reply - meeting, meeting - close, close])


def draw_cumulative(rng: np.random.Generator, per_week: int, probs: Floats, replicates: int) -> Counts:
    """Cumulative outcome counts at each look, shape (replicates, LOOKS, 4)."""
    weekly = rng.multinomial(per_week, probs, size=(replicates, LOOKS))
    return np.cumsum(weekly, axis=1, dtype=np.int64)


def arm_counts(cum: Counts) -> tuple[Counts, Counts, Counts, Counts]:
    """Messages, replies, meetings and deals from the four exclusive outcomes."""
    deals = cum[..., 3]
    meetings = cum[..., 2] + deals
    replies = cum[..., 1] + meetings
    return cum.sum(axis=-1), replies, meetings, deals


# --- The sequential test in numpy (the formulas of experiments.stats) ---------------------------


def value_mean_and_variance(cum: Counts) -> tuple[Floats, Floats]:
    """The mean and variance of per-message value, as ``experiments.stats.value_mean_and_variance``."""
    n, replies, meetings, deals = arm_counts(cum)
    mean = CLOSE_WEIGHT * (deals / n) + MEETING_WEIGHT * (meetings / n) + REPLY_WEIGHT * (replies / n)
    second = (
        REPLY_WEIGHT**2 * (replies - meetings) / n
        + (REPLY_WEIGHT + MEETING_WEIGHT) ** 2 * (meetings - deals) / n
        + (REPLY_WEIGHT + MEETING_WEIGHT + CLOSE_WEIGHT) ** 2 * deals / n
    )
    return mean, np.maximum(second - mean * mean, 0.0)


def value_z(control: Counts, variant: Counts) -> Floats:
    """The two-sample z of per-message value at each look, shape (replicates, LOOKS)."""
    mean_c, var_c = value_mean_and_variance(control)
    mean_v, var_v = value_mean_and_variance(variant)
    se = np.sqrt(var_v / variant.sum(axis=-1) + var_c / control.sum(axis=-1))
    return np.asarray((mean_v - mean_c) / se, dtype=np.float64)


def close_rate_blocked(control: Counts, variant: Counts) -> Flags:
    """Where the close-rate guardrail fires (pooled two-proportion z <= -z_0.99).

    The simulation draws no unsubscribes, so the unsubscribe guardrail never fires here.
    """
    n_c, _, _, deals_c = arm_counts(control)
    n_v, _, _, deals_v = arm_counts(variant)
    pooled = (deals_c + deals_v) / (n_c + n_v)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_v))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (deals_v / n_v - deals_c / n_c) / se
    return np.asarray(z <= -GUARDRAIL_Z)


def srm_stopped(control: Counts, variant: Counts) -> Flags:
    """Where the sample-ratio check stops the test (p < 0.001); never with the fixed weekly volumes."""
    n_c, n_v = control.sum(axis=-1), variant.sum(axis=-1)
    expected_v = (n_c + n_v) * VARIANT_SHARE
    expected_c = (n_c + n_v) - expected_v
    chi2 = (n_v - expected_v) ** 2 / expected_v + (n_c - expected_c) ** 2 / expected_c
    p_value = np.vectorize(math.erfc)(np.sqrt(chi2 / 2))
    return np.asarray(p_value < SRM_P_THRESHOLD)


def boundaries() -> Floats:
    """The O'Brien-Fleming boundary at looks 1..LOOKS, from ``experiments.stats``."""
    return np.array([obf_boundary(look, LOOKS) for look in range(1, LOOKS + 1)], dtype=np.float64)


def verdicts(control: Counts, variant: Counts) -> tuple[Counts, Flags]:
    """Each look's verdict (1 promote, -1 control wins, 0 none) and whether it ends the test.

    Looks before ``FIRST_DECISION_LOOK`` decide nothing; a stopped test ends without a verdict;
    a promotion blocked by the guardrail is no verdict and the test continues.
    """
    z, bound = value_z(control, variant), boundaries()
    decidable = np.arange(1, LOOKS + 1) >= min(FIRST_DECISION_LOOK, LOOKS)
    stopped = srm_stopped(control, variant) & decidable
    promote = (z >= bound) & ~close_rate_blocked(control, variant)
    verdict = np.where(promote, 1, np.where(z <= -bound, -1, 0)) * (decidable & ~stopped)
    return verdict.astype(np.int64), stopped | (verdict != 0)


def sequential_outcomes(control: Counts, variant: Counts) -> tuple[Flags, Flags, Counts]:
    """Per replicate: promoted, rejected (control won), and the look that ended the test (LOOKS if none)."""
    verdict, ends = verdicts(control, variant)
    ended = ends.any(axis=1)
    first = np.where(ended, ends.argmax(axis=1), LOOKS - 1)
    final = verdict[np.arange(len(first)), first] * ended
    return final == 1, final == -1, (first + 1).astype(np.int64)


def naive_passes(control: Counts, variant: Counts) -> Flags:
    """Where the seed's rule (score more than 5 % better) passes, shape (replicates, LOOKS)."""
    score_c, _ = value_mean_and_variance(control)
    score_v, _ = value_mean_and_variance(variant)
    with np.errstate(divide="ignore", invalid="ignore"):
        improvement = (score_v - score_c) / score_c * 100
    return np.asarray((score_c != 0) & (improvement > NAIVE_THRESHOLD_PCT))


# --- Checking the numpy path against decide() ---------------------------------------------------


def to_arm(cum: Counts) -> ArmCounts:
    """One replicate's cumulative counts at one look as ``ArmCounts``."""
    messages, replies, meetings, deals = (int(value) for value in arm_counts(cum))
    return ArmCounts(messages=messages, replies=replies, meetings=meetings, deals=deals)


def check_look(control: Counts, variant: Counts, z: float, bound: float, verdict: int, naive: bool, look: int) -> None:
    """Raise AssertionError when ``decide()`` or ``naive_rule()`` disagrees with the numpy path at one look."""
    arm_c, arm_v = to_arm(control), to_arm(variant)
    decision = decide(arm_c, arm_v, look=look, planned_looks=LOOKS, expected_variant_share=VARIANT_SHARE)
    expected = {1: "variant", -1: "control", 0: None}[verdict]
    where = f"look {look}, control {arm_c}, variant {arm_v}"
    if decision.z is None or not math.isclose(decision.z, z, rel_tol=1e-9, abs_tol=1e-12):
        raise AssertionError(f"z: decide() {decision.z} vs numpy {z} at {where}")
    if decision.boundary is None or not math.isclose(decision.boundary, bound, rel_tol=1e-12):
        raise AssertionError(f"boundary: decide() {decision.boundary} vs numpy {bound} at {where}")
    near_tie = abs(abs(z) - bound) < TIE_TOLERANCE
    if decision.winner != expected and not near_tie:
        raise AssertionError(f"verdict: decide() {decision.winner} vs numpy {expected} at {where}")
    if naive_rule(arm_c, arm_v, NAIVE_THRESHOLD_PCT) != naive:
        raise AssertionError(f"naive rule: naive_rule() vs numpy {naive} at {where}")


def check_agreement(control: Counts, variant: Counts, sample: int) -> int:
    """Re-run ``decide()`` and ``naive_rule()`` at every look of the first ``sample`` replicates; return the count."""
    z, bound = value_z(control, variant), boundaries()
    verdict, _ = verdicts(control, variant)
    naive = naive_passes(control, variant)
    checked = 0
    for rep in range(min(sample, control.shape[0])):
        for k in range(LOOKS):
            args = (float(z[rep, k]), float(bound[k]), int(verdict[rep, k]), bool(naive[rep, k]), k + 1)
            check_look(control[rep, k], variant[rep, k], *args)
            checked += 1
    return checked


# --- Running ------------------------------------------------------------------------------------


def run_scenario(scenario: Scenario, replicates: int, rng: np.random.Generator, sample: int) -> Result:
    """Draw ``replicates`` experiments of one scenario and judge them every way, on the same draws."""
    reply, meeting, close = CONTROL_RATES
    control = draw_cumulative(rng, CONTROL_PER_WEEK, funnel_probabilities(reply, meeting, close), replicates)
    scaled = (rate * scenario.scale for rate in CONTROL_RATES)
    variant = draw_cumulative(rng, VARIANT_PER_WEEK, funnel_probabilities(*scaled), replicates)
    checked = check_agreement(control, variant, sample)
    promoted, rejected, ended_at = sequential_outcomes(control, variant)
    naive = naive_passes(control, variant)
    return Result(
        scenario=scenario,
        replicates=replicates,
        sequential=float(promoted.mean()),
        rejected=float(rejected.mean()),
        naive_week1=float(naive[:, 0].mean()),
        naive_weekly=float(naive.any(axis=1).mean()),
        mean_look=float(ended_at.mean()),
        checked=checked,
    )


def percent(rate: float, replicates: int) -> str:
    """A rate in % with its Monte Carlo standard error."""
    se = math.sqrt(rate * (1 - rate) / replicates)
    return f"{rate:6.2%} ±{se:.2%}"


def print_table(results: Sequence[Result]) -> None:
    """The promotion rates of each scenario, beside the naive rule's, with PASS/FAIL."""
    header = (
        f"{'scenario':<22} {'sequential promotes':>20} {'control wins':>13} {'mean end look':>13} "
        f"{'naive week 1':>13} {'naive weekly':>13}  target"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        print(
            f"{row.scenario.name:<22} {percent(row.sequential, row.replicates):>20} {row.rejected:>13.2%} "
            f"{row.mean_look:>13.2f} {row.naive_week1:>13.2%} {row.naive_weekly:>13.2%}  "
            f"{row.scenario.target}: {'PASS' if row.passed else 'FAIL'}"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: replicates, seed and how many replicates to re-check with ``decide()``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--replicates", type=int, default=10_000, help="experiments per scenario (default 10,000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (fixed by default)")
    parser.add_argument("--check", type=int, default=200, help="replicates per scenario re-run through decide()")
    args = parser.parse_args(argv)
    if args.replicates < 1 or args.check < 0:
        parser.error("--replicates must be at least 1 and --check at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every scenario and print the table; 0 when the sequential test meets all targets, else 1."""
    args = parse_args(argv)
    started = time.perf_counter()
    results = []
    for index, scenario in enumerate(SCENARIOS):
        # One stream per scenario, so a scenario's draws do not depend on the others.
        rng = np.random.default_rng([args.seed, index])
        results.append(run_scenario(scenario, args.replicates, rng, args.check))
    print(
        f"{args.replicates:,} replicates per scenario; 90/10 split, {VARIANT_PER_WEEK:,} variant messages a week, "
        f"{LOOKS} weekly looks; O'Brien-Fleming boundary {obf_boundary(LOOKS, LOOKS):.3f} * sqrt({LOOKS}/k)\n"
    )
    print_table(results)
    checked = sum(row.checked for row in results)
    print("\nmean end look: the look that ended the sequential test (8 when it ran out undecided)")
    print(f"decide() agreed with the numpy path on {checked:,} looks; {time.perf_counter() - started:.1f} s")
    passed = all(row.passed for row in results)
    print("ALL TARGETS MET" if passed else "SOME TARGETS MISSED")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
