"""Scrubbing cost per kB of text, on adversarial and ordinary messages, against one regex pass.

Usage: python bench/scrub.py [ROUNDS] (default 7). For each input the script times :func:`scrub`
and, as the floor, one compiled whole-word pattern substituting the first name over the same text
(the least a name scrubber must do). Rounds interleave the two; each figure is the median of the
rounds, with the range. Targets: scrubbing costs at most 20x the floor per kB on every input, and
its cost per kB at 300 kB is at most 1.5x its cost at 30 kB (linear, not quadratic).
"""

import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from outcomes.scrubbing import scrub

NAMES = {"first_name": "Jo", "last_name": "Smith", "company": "Acme Inc."}
FLOOR = re.compile(r"(?<![^\W_])jo(?![^\W_])", re.IGNORECASE)
RATIO_TARGET = 20.0
GROWTH_TARGET = 1.5
ORDINARY = (
    "Hi Jo, I saw that Acme is hiring for its RevOps team. Teams like yours at Acme Inc. cut "
    "their ramp time by 30% with us; call me on +1 (415) 555-0100 or see https://example.com/x?id=7. "
)
INPUTS: dict[str, Callable[[int], str]] = {
    "one name repeated": lambda size: ("Jo " * (size // 3 + 1))[:size],
    "all names repeated": lambda size: ("Jo Smith Acme " * (size // 14 + 1))[:size],
    "ordinary message": lambda size: (ORDINARY * (size // len(ORDINARY) + 1))[:size],
}


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def per_kb(text: str, rounds: int) -> tuple[list[float], list[float]]:
    ours, floor = [], []
    kb = len(text) / 1000
    for _ in range(rounds):
        ours.append(timed(lambda: scrub(text, **NAMES)) / kb)
        floor.append(timed(lambda: FLOOR.sub("{{first_name}}", text)) / kb)
    return ours, floor


def main(rounds: int) -> int:
    failed = False
    print(f"{'input':<20} {'size':>7} {'scrub µs/kB':>22} {'floor µs/kB':>12} {'ratio':>6}")
    for name, make in INPUTS.items():
        medians = {}
        for size in (30_000, 300_000):
            ours, floor = per_kb(make(size), rounds)
            ratio = statistics.median(ours) / statistics.median(floor)
            medians[size] = statistics.median(ours)
            span = f"{min(ours) * 1e6:.0f}-{max(ours) * 1e6:.0f}"
            print(
                f"{name:<20} {size // 1000:>5}kB {medians[size] * 1e6:>8.1f} ({span:>11}) "
                f"{statistics.median(floor) * 1e6:>12.1f} {ratio:>6.1f}"
            )
            failed |= ratio > RATIO_TARGET
        growth = medians[300_000] / medians[30_000]
        verdict = "PASS" if growth <= GROWTH_TARGET else "FAIL"
        print(f"{'':<20} cost per kB 300 kB / 30 kB: {growth:.2f} (target ≤ {GROWTH_TARGET}) {verdict}")
        failed |= growth > GROWTH_TARGET
    print(f"ratio to the floor: target ≤ {RATIO_TARGET}x on every input: {'FAIL' if failed else 'PASS'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 7))
