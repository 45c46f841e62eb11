"""How often the A/B test promotes when leads differ: the per-lead test of ``experiments.stats``.

Usage: ``python bench/ab_simulation.py [--replicates N] [--seed S] [--check M]`` (default 10,000
replicates per cell, a fixed seed, and ``decide()`` re-run on 100 replicates per cell).

Routing is sticky per lead, so the test randomises leads. Each lead gets ``1 + Poisson(m - 1)``
messages and a responsiveness ``g ~ Gamma(k, 1 / k)`` (mean 1) that scales its rates: each
message replies with ``min(0.10 g s, 1)``, a reply books a meeting with 0.4 and a meeting closes
with 0.5 (so the control's rates are 10 %, 4 % and 2 %), where ``s`` is the variant's true effect
(1: A/A; 0.9: 10 % worse; 1.15: 15 % better). Scenarios: m = 1 (no clustering); m = 3, k = 1;
m = 3, k = 0.5; m = 5, k = 0.3. The design is the product's: each lead joins the variant with
probability 0.1, looks are weekly for 8 weeks, and the weekly volume ramps up
(:data:`WEEKLY_LEADS`, 25,000 leads in all, the test's ``planned_leads``), so the looks carry
unequal information and the boundaries come from alpha spending on the information fractions.

The decision is the product's code: every look's arms are summed per lead (as the database's
GROUP BY does), and ``experiments.stats``' own functions (ratio means and delta-method variances,
the z, the sample-ratio chi-square, the close-rate guardrail, the spending boundary and
``verdict_codes``) run on numpy arrays of replicates. ``decide()`` itself is run on a sample of
replicates at every look and must agree, or the script stops with an error. The "per-message"
column is the old analysis of the same draws (every message its own lead), for comparison.

Targets: false promotion in A/A <= 5 % in every scenario; promotion of a 10 % worse variant
<= 1 %; power at +15 % >= 80 % for m = 3, k = 1 (reported for the others). Prints the table
with PASS/FAIL and exits 0 only when all are met.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.stats import (  # noqa: E402
    FIRST_DECISION_LOOK,
    SRM_CHI2_CRITICAL,
    ArmCounts,
    LeadSums,
    decide,
    guardrail_critical,
    look_boundary,
    message_value_squares,
    ratio_mean_and_variance,
    ratio_z,
    srm_chi2,
    verdict_codes,
)

Floats = NDArray[np.float64]
LOOKS = 8
VARIANT_SHARE = 0.1
WEEKLY_LEADS = (1_500, 2_500, 3_000, 3_500, 3_500, 3_500, 3_500, 4_000)
PLANNED_LEADS = sum(WEEKLY_LEADS)
REPLY, MEETING_GIVEN_REPLY, DEAL_GIVEN_MEETING = 0.10, 0.4, 0.5
DEFAULT_SEED = 20_261_205
CHUNK = 100  # replicates drawn at once
# The per-lead sums each arm keeps, in this order (as outcomes.selectors.arm_lead_sums).
COLUMNS = ("leads", "n", "nn", "r", "rr", "nr", "m", "mm", "nm", "d", "dd", "nd", "v", "vv", "nv")


@dataclass(frozen=True)
class Scenario:
    """How messages cluster in leads: ``m`` messages per lead on average, responsiveness shape ``k``."""

    name: str
    m: float
    k: float | None  # None: every lead equally responsive


SCENARIOS = (
    Scenario("m=1", 1, None),
    Scenario("m=3, k=1", 3, 1.0),
    Scenario("m=3, k=0.5", 3, 0.5),
    Scenario("m=5, k=0.3", 5, 0.3),
)
EFFECTS = (("A/A", 1.0), ("-10 %", 0.9), ("+15 %", 1.15))
POWER_SCENARIO = "m=3, k=1"


# --- Drawing ------------------------------------------------------------------------------------


def draw_leads(rng: np.random.Generator, scenario: Scenario, scale: float, count: int) -> dict[str, Floats]:
    """``count`` leads' messages, replies, meetings, deals and value."""
    n = 1 + rng.poisson(scenario.m - 1, count) if scenario.m > 1 else np.ones(count, dtype=np.int64)
    g = rng.gamma(scenario.k, 1 / scenario.k, count) if scenario.k else np.ones(count)
    replies = rng.binomial(n, np.minimum(REPLY * g * scale, 1.0))
    meetings = rng.binomial(replies, MEETING_GIVEN_REPLY)
    deals = rng.binomial(meetings, DEAL_GIVEN_MEETING)
    value = 0.2 * replies + 0.3 * meetings + 0.5 * deals
    return {
        "n": n.astype(float),
        "r": replies.astype(float),
        "m": meetings.astype(float),
        "d": deals.astype(float),
        "v": value,
    }


def segment_sums(leads: dict[str, Floats], segments: NDArray[np.int64], size: int) -> Floats:
    """The per-lead sums of :data:`COLUMNS` for each segment (replicate x week), shape (size, columns)."""
    n = leads["n"]
    weights = [np.ones_like(n), n, n * n]
    for name in ("r", "m", "d", "v"):
        y = leads[name]
        weights += [y, y * y, n * y]
    return np.stack([np.bincount(segments, weights=w, minlength=size) for w in weights], axis=1)


def draw_arm(rng: np.random.Generator, scenario: Scenario, scale: float, counts: NDArray[np.int64]) -> Floats:
    """Cumulative per-lead sums at each look for leads counted ``counts`` (replicates, LOOKS)."""
    replicates = counts.shape[0]
    segments = np.repeat(np.arange(replicates * LOOKS), counts.ravel())
    leads = draw_leads(rng, scenario, scale, int(counts.sum()))
    weekly = segment_sums(leads, segments, replicates * LOOKS).reshape(replicates, LOOKS, len(COLUMNS))
    return np.cumsum(weekly, axis=1)


# --- The product's decision on arrays -------------------------------------------------------------


def column(arm: Floats, name: str) -> Floats:
    return arm[..., COLUMNS.index(name)]


def moments(arm: Floats, y: str) -> tuple[Floats, Floats]:
    """The arm's ratio mean and delta-method variance for count ``y`` (``experiments.stats``)."""
    sums = LeadSums(column(arm, y), column(arm, y + y), column(arm, "n" + y))
    return ratio_mean_and_variance(sums, column(arm, "n"), column(arm, "nn"))


def per_message_moments(arm: Floats) -> tuple[Floats, Floats]:
    """The old analysis: every message its own lead (the value's squares of single messages)."""
    squares = message_value_squares(column(arm, "r"), column(arm, "m"), column(arm, "d"))
    sums = LeadSums(column(arm, "v"), squares, column(arm, "v"))
    return ratio_mean_and_variance(sums, column(arm, "n"), column(arm, "n"))


def fractions() -> list[float]:
    """The information fraction of each look: the leads so far over the planned leads."""
    return [float(value) for value in np.cumsum(WEEKLY_LEADS) / PLANNED_LEADS]


def boundaries() -> Floats:
    """The spending boundary at each look, from the product's ``look_boundary``."""
    spread = fractions()
    return np.array([look_boundary(k, LOOKS, spread[:k]) for k in range(1, LOOKS + 1)])


def verdicts(control: Floats, variant: Floats, per_message: bool = False) -> NDArray[np.int64]:
    """Each look's verdict code (1 promote, -1 control wins, 0 none; 2 stopped), shape (replicates, LOOKS)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (per_message_moments(control), per_message_moments(variant)) if per_message else None
        z = ratio_z(*value) if value else ratio_z(moments(control, "v"), moments(variant, "v"))
        blocked = ratio_z(moments(control, "d"), moments(variant, "d")) <= -guardrail_critical(0.01)
    stopped = srm_chi2(column(control, "leads"), column(variant, "leads"), VARIANT_SHARE) > SRM_CHI2_CRITICAL
    decidable = np.arange(1, LOOKS + 1) >= min(FIRST_DECISION_LOOK, LOOKS)
    code = verdict_codes(z, boundaries(), decidable=decidable, stopped=stopped, blocked=blocked)
    return np.where(stopped & decidable, 2, code)


def first_verdict(codes: NDArray[np.int64]) -> NDArray[np.int64]:
    """The verdict that ended each replicate's test (0: none by the last look; 2: stopped)."""
    ended = codes != 0
    first = np.where(ended.any(axis=1), ended.argmax(axis=1), LOOKS - 1)
    return codes[np.arange(len(first)), first]


# --- Checking against decide() ------------------------------------------------------------------


def to_arm(arm: Floats) -> ArmCounts:
    """One replicate's sums at one look as the product's ``ArmCounts``."""
    get = {name: float(arm[COLUMNS.index(name)]) for name in COLUMNS}
    sums = {
        name: LeadSums(get[y], get[y + y], get["n" + y])
        for name, y in (("replies", "r"), ("meetings", "m"), ("deals", "d"), ("value", "v"))
    }
    sums["unsubscribes"] = LeadSums(0.0, 0.0, 0.0)
    counts = {name: int(get[y]) for name, y in (("replies", "r"), ("meetings", "m"), ("deals", "d"))}
    return ArmCounts(
        messages=int(get["n"]), **counts, leads=int(get["leads"]), messages_squared=int(get["nn"]), sums=sums
    )


def check_agreement(control: Floats, variant: Floats, codes: NDArray[np.int64], sample: int) -> int:
    """Re-run ``decide()`` at every look of the first ``sample`` replicates; raise on a disagreement."""
    checked, spread = 0, fractions()
    for rep in range(min(sample, control.shape[0])):
        for k in range(LOOKS):
            decision = decide(
                to_arm(control[rep, k]),
                to_arm(variant[rep, k]),
                look=k + 1,
                planned_looks=LOOKS,
                expected_variant_share=VARIANT_SHARE,
                fractions=spread[: k + 1],
            )
            got = 2 if decision.stopped else {"variant": 1, "control": -1, None: 0}[decision.winner]
            if got != codes[rep, k] and not _near_tie(decision):
                raise AssertionError(f"decide() {got} vs numpy {codes[rep, k]} at replicate {rep}, look {k + 1}")
            checked += 1
    return checked


def _near_tie(decision: object) -> bool:
    z, bound = getattr(decision, "z", None), getattr(decision, "boundary", None)
    return z is not None and bound is not None and abs(abs(z) - bound) < 1e-9


# --- Running ------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One scenario and effect: how its replicates ended."""

    promoted: int = 0
    rejected: int = 0
    per_message_promoted: int = 0
    replicates: int = 0
    checked: int = 0


def run_chunk(rng: np.random.Generator, scenario: Scenario, size: int, cells: dict[str, Cell], check: int) -> None:
    """Draw ``size`` replicates: one control draw shared by the three effects' variants."""
    variant_counts = rng.binomial(np.array(WEEKLY_LEADS), VARIANT_SHARE, size=(size, LOOKS))
    control = draw_arm(rng, scenario, 1.0, np.array(WEEKLY_LEADS) - variant_counts)
    for name, scale in EFFECTS:
        variant = draw_arm(rng, scenario, scale, variant_counts)
        codes = verdicts(control, variant)
        ended = first_verdict(codes)
        cell = cells[name]
        cell.promoted += int((ended == 1).sum())
        cell.rejected += int((ended == -1).sum())
        cell.per_message_promoted += int((first_verdict(verdicts(control, variant, per_message=True)) == 1).sum())
        cell.replicates += size
        left = check - cell.checked // LOOKS  # replicates still to re-run through decide()
        if left > 0:
            cell.checked += check_agreement(control, variant, codes, min(left, size))


def run_scenario(scenario: Scenario, replicates: int, seed: int, index: int, check: int) -> dict[str, Cell]:
    """All three effects of one scenario over ``replicates`` replicates, in chunks."""
    rng = np.random.default_rng([seed, index])
    cells = {name: Cell() for name, _ in EFFECTS}
    done = 0
    while done < replicates:
        size = min(CHUNK, replicates - done)
        run_chunk(rng, scenario, size, cells, check)
        done += size
    return cells


def target(scenario: Scenario, effect: str, rate: float) -> tuple[str, str]:
    """The target of one cell and whether it is met ("" when the cell is only reported)."""
    if effect == "A/A":
        return "false promotion <= 5 %", "PASS" if rate <= 0.05 else "FAIL"
    if effect == "-10 %":
        return "promotion <= 1 %", "PASS" if rate <= 0.01 else "FAIL"
    if scenario.name == POWER_SCENARIO:
        return "power >= 80 %", "PASS" if rate >= 0.80 else "FAIL"
    return "power (reported)", ""


def percent(count: int, replicates: int) -> str:
    rate = count / replicates
    return f"{rate:6.2%} ±{math.sqrt(rate * (1 - rate) / replicates):.2%}"


def print_table(results: dict[str, dict[str, Cell]]) -> bool:
    """The table with targets; whether every target is met."""
    header = f"{'scenario':<12} {'effect':<7} {'per-lead promotes':>18} {'control wins':>13} "
    header += f"{'per-message promotes':>21}  target"
    print(header + "\n" + "-" * len(header))
    passed = True
    for scenario in SCENARIOS:
        for effect, _ in EFFECTS:
            cell = results[scenario.name][effect]
            rate = cell.promoted / cell.replicates
            goal, verdict = target(scenario, effect, rate)
            passed &= verdict != "FAIL"
            print(
                f"{scenario.name:<12} {effect:<7} {percent(cell.promoted, cell.replicates):>18} "
                f"{cell.rejected / cell.replicates:>13.2%} {percent(cell.per_message_promoted, cell.replicates):>21}  "
                f"{goal}{': ' + verdict if verdict else ''}"
            )
    return passed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--replicates", type=int, default=10_000, help="replicates per cell (default 10,000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (fixed by default)")
    parser.add_argument("--check", type=int, default=100, help="replicates per cell re-run through decide()")
    args = parser.parse_args(argv)
    if args.replicates < 1 or args.check < 0:
        parser.error("--replicates must be at least 1 and --check at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every scenario and print the table; 0 when every target is met, else 1."""
    args = parse_args(argv)
    started = time.perf_counter()
    results = {s.name: run_scenario(s, args.replicates, args.seed, i, args.check) for i, s in enumerate(SCENARIOS)}
    bounds = ", ".join(f"{b:.2f}" for b in boundaries())
    spread = ", ".join(f"{f:.2f}" for f in fractions())
    print(
        f"{args.replicates:,} replicates per cell; 90/10 split of leads; {LOOKS} weekly looks of {WEEKLY_LEADS} leads "
        f"(planned {PLANNED_LEADS:,}); information fractions {spread}; boundaries {bounds}\n"
    )
    passed = print_table(results)
    checked = sum(cell.checked for cells in results.values() for cell in cells.values())
    print(f"\ndecide() agreed with the numpy path on {checked:,} looks; {time.perf_counter() - started:.1f} s")
    print("ALL TARGETS MET" if passed else "SOME TARGETS MISSED")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
