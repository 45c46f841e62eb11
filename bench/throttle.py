"""Rate-limit cost per request as a key's traffic grows: the fixed-window counter against DRF's history.

Usage: python bench/throttle.py [ROUNDS] (default 7). For each throttle, a key first sends
``HISTORY`` requests inside the current window, then the script times ``SAMPLE`` more checks. The
baseline is DRF's ``SimpleRateThrottle`` (a list of every request's time in the window, read,
filtered and written back on each request), which Flywheel used before; both run on the same
local-memory cache, rounds interleaved. Each figure is the median per-request time over the rounds,
with the range. Target: the counter's cost at 8,000 requests of history is within 1.2x its cost
at none (it does not grow with traffic).
"""

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")

import django

django.setup()

from django.core.cache import cache  # noqa: E402
from rest_framework.throttling import SimpleRateThrottle  # noqa: E402

from flywheel.auth import APIKeyRateThrottle  # noqa: E402

HISTORIES = (0, 8_000)
SAMPLE = 2_000
GROWTH_TARGET = 1.2


class HistoryThrottle(SimpleRateThrottle):
    """DRF's sliding-window throttle with the same key and rate: the baseline."""

    scope = "api_key"
    get_cache_key = APIKeyRateThrottle.get_cache_key


class Request:
    """The little of a request a throttle reads: an authenticated staff user."""

    class User:
        pk = 1
        is_authenticated = True

    user = User()


def per_request(throttle_class: type[Any], history: int) -> float:
    """Seconds per ``allow_request`` once ``history`` requests are in the window."""
    cache.clear()
    throttle_class.THROTTLE_RATES = {"api_key": "1000000/h"}
    request = Request()
    for _ in range(history):
        throttle_class().allow_request(request, None)
    start = time.perf_counter()
    for _ in range(SAMPLE):
        throttle_class().allow_request(request, None)
    return (time.perf_counter() - start) / SAMPLE


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for name, throttle_class in (("history (DRF, before)", HistoryThrottle), ("counter", APIKeyRateThrottle)):
            for history in HISTORIES:
                samples.setdefault((name, history), []).append(per_request(throttle_class, history))
    print(f"rate-limit check, µs per request (median of {rounds} interleaved rounds, [range])")
    for (name, history), values in samples.items():
        low, high = min(values) * 1e6, max(values) * 1e6
        print(f"  {name:22s} history {history:6d}: {statistics.median(values) * 1e6:8.1f} [{low:.1f}-{high:.1f}]")
    growth = statistics.median(samples[("counter", HISTORIES[-1])]) / statistics.median(samples[("counter", 0)])
    verdict = "PASS" if growth <= GROWTH_TARGET else "FAIL"
    print(f"counter growth {HISTORIES[-1]} vs 0: {growth:.2f}x (target <= {GROWTH_TARGET}x) {verdict}")


if __name__ == "__main__":
    main()
