"""Routing calls per second: ``choose_model`` with a warm cache against a plain dict lookup.

Usage: python bench/routing.py [N] (default 200,000 leads), on the database of ``DATABASE_URL``
(SQLite by default). It creates an organization and three deployed models (50/30/20) through the
services in a throwaway test database, warms the routing cache, then times N sticky lookups and,
in the same run, N lookups of the same answers in a plain dict: the floor any cache could reach.
Rounds interleave the two; it prints medians with their range, and PASS/FAIL against
``TARGET_US``. It also times one cold table load (what the first request after a traffic change
pays).
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from flywheel.models import Organization  # noqa: E402
from registry import routing  # noqa: E402
from registry.models import RegisteredModel  # noqa: E402
from registry.services import model_deploy, model_register  # noqa: E402


def make_pool() -> Organization:
    """An organization whose three deployed models split its traffic 50/30/20."""
    organization = Organization.objects.create(name="bench routing", slug=f"bench-routing-{time.time_ns()}")
    models = [
        model_register(
            model_id=f"ft:bench:{n}", model_version=f"v{n}.0.0", base_model="bench", organization=organization
        )
        for n in (1, 2, 3)
    ]
    model_deploy(model=models[0], traffic_percentage=100)
    model_deploy(model=models[1], traffic_percentage=37.5)
    model_deploy(model=models[2], traffic_percentage=20)
    organization.refresh_from_db()
    return organization


def rate(count: int, seconds: float) -> float:
    return count / seconds


def time_choose_model(organization: Organization, keys: list[str]) -> float:
    choose = routing.choose_model
    routing.choose_model(organization, keys[0])  # warm the cache
    start = time.perf_counter()
    for key in keys:
        choose(organization, key)
    return rate(len(keys), time.perf_counter() - start)


ROUNDS = 5
TARGET_US = 10.0  # a routing decision adds at most 1 % to a request whose floor is ~1 ms


def time_dict(answers: dict[str, RegisteredModel], keys: list[str]) -> float:
    start = time.perf_counter()
    for key in keys:
        answers[key]
    return rate(len(keys), time.perf_counter() - start)


def time_cold_load(organization: Organization, repeat: int = 200) -> float:
    """Milliseconds to load a routing table from the database (one query)."""
    start = time.perf_counter()
    for _ in range(repeat):
        routing.load_table(organization)
    return (time.perf_counter() - start) / repeat * 1000


def isolated_test_database() -> None:
    """Use a throwaway database of its own name, so a test run on the same server is left alone."""
    settings = connection.settings_dict
    if connection.vendor != "sqlite":
        settings.setdefault("TEST", {})["NAME"] = f"test_{settings['NAME']}_routing_bench"


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    setup_test_environment()
    isolated_test_database()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        organization = make_pool()
        keys = [f"lead-{n}@example.com" for n in range(count)]
        answers = {key: routing.choose_model(organization, key) for key in keys}
        warms, plains = [], []
        for _ in range(ROUNDS):  # interleaved, so drift in the machine hits both alike
            warms.append(time_choose_model(organization, keys))
            plains.append(time_dict(answers, keys))
        warm, plain = statistics.median(warms), statistics.median(plains)
        cold_ms = time_cold_load(organization)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    split = {m.model_version: sum(1 for a in answers.values() if a == m) / count * 100 for m in set(answers.values())}
    observed = ", ".join(f"{version} {share:.2f} %" for version, share in sorted(split.items()))
    print(f"database: {connection.vendor}, {count} leads over 3 deployed models; observed split {observed}")
    print(f"medians of {ROUNDS} interleaved rounds [range]")
    for name, value, values in (("choose_model, warm cache", warm, warms), ("plain dict lookup", plain, plains)):
        spread = f"[{min(values):,.0f}-{max(values):,.0f}]"
        print(f"{name:24s}: {value:12,.0f} calls/s ({1e6 / value:.3f} µs/call) {spread}")
    verdict = "PASS" if 1e6 / warm <= TARGET_US else "FAIL"
    print(f"choose_model cost       : {1e6 / warm:12.2f} µs/call (target <= {TARGET_US} µs): {verdict}")
    print(f"cold table load         : {cold_ms:12.3f} ms (once per process after each traffic change)")


if __name__ == "__main__":
    main()
