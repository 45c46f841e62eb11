"""Benchmark: one pool's leaderboard, ranked per pool, against the query that ranked every tenant.

Usage (from the project's root, PostgreSQL)::

    DATABASE_URL=postgres://postgres@127.0.0.1:54329/flywheel_bench_leaderboard \\
        .venv/bin/python bench/leaderboard.py [--models 10000] [--organizations 100] [--rounds 200]

It builds ``--models`` models spread over ``--organizations`` organizations (and one empty
organization) with one SQL statement each, in organizations whose slugs start with
``bench-leaderboard``, the only rows it ever deletes. Then, in interleaved rounds, it times:

- ``old``: the view as it was, partitioned by ``COALESCE(CAST(organization_id AS TEXT), 'global')``,
  filtered to one pool (the baseline, measured in the same run);
- ``view``: today's ``model_leaderboard`` view (partitioned by ``organization_id``) for one pool;
- ``selector``: the SQL the API and the admin run (``registry.selectors.leaderboard``: ranks
  after the filter), for one pool; ``selector_orm`` adds building the model objects (shown, no target);
- ``view_empty`` and ``selector_empty``: the same for an organization with no models.

It prints the median and range of each, the target (one pool under 5 ms; an empty pool no
slower than a pool of about ``models / organizations`` models) and PASS or FAIL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 5.0
EMPTY_TOLERANCE = 1.10  # an empty pool may cost at most 10 % more than a full one (timer noise)
SLUG = "bench-leaderboard"
ORDER = "ORDER BY close_rate DESC, reply_rate DESC, total_revenue DESC, model_version"
OLD = f"""
SELECT * FROM (
  SELECT id, organization_id, model_id, model_version, status, total_messages_sent, total_revenue,
         reply_rate, meeting_rate, close_rate,
         RANK() OVER (PARTITION BY COALESCE(CAST(organization_id AS TEXT), 'global') ORDER BY close_rate DESC) AS c,
         RANK() OVER (PARTITION BY COALESCE(CAST(organization_id AS TEXT), 'global') ORDER BY reply_rate DESC) AS r,
         RANK() OVER (PARTITION BY COALESCE(CAST(organization_id AS TEXT), 'global') ORDER BY total_revenue DESC) AS v
  FROM model_registry
) ranked WHERE COALESCE(CAST(organization_id AS TEXT), 'global') = %s AND total_messages_sent >= 0 {ORDER}
"""
VIEW = f"SELECT * FROM model_leaderboard WHERE organization_id = %s AND total_messages_sent >= 0 {ORDER}"


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")
    import django
    from django.conf import settings

    django.setup()
    settings.DEBUG = False


def ensure_database() -> None:
    """Create the PostgreSQL database named in DATABASE_URL when it does not exist, then migrate."""
    import psycopg
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("bench/leaderboard.py measures PostgreSQL: set DATABASE_URL to a postgres:// URL.")
    params = connection.get_connection_params()
    name = connection.settings_dict["NAME"]
    admin = {key: value for key, value in params.items() if key not in ("dbname", "cursor_factory", "context")}
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as server:
        if not server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            server.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)


def build(models: int, organizations: int) -> tuple[str, str]:
    """Organizations and models made with SQL; returns (a full organization's id, an empty one's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM model_registry WHERE organization_id IN "
            "(SELECT id FROM flywheel_organization WHERE slug LIKE %s)",
            [SLUG + "%"],
        )
        cursor.execute("DELETE FROM flywheel_organization WHERE slug LIKE %s", [SLUG + "%"])
        cursor.execute(
            """INSERT INTO flywheel_organization (id, name, slug, routing_version, created_at, training_provider)
               SELECT gen_random_uuid(), 'bench ' || n, %s || '-' || n, 0, now(), ''
               FROM generate_series(0, %s) AS n""",
            [SLUG, organizations],
        )
        cursor.execute(
            """WITH orgs AS (SELECT id, row_number() OVER (ORDER BY slug) - 1 AS k FROM flywheel_organization
                             WHERE slug LIKE %s AND slug <> %s)
               INSERT INTO model_registry (id, organization_id, model_id, model_version, base_model, status,
                 traffic_percentage, ab_test_group, is_baseline, training_examples_count, positive_examples,
                 deals_in_training, total_messages_sent, total_replies, total_meetings_booked, total_deals_closed,
                 total_revenue, provider, fine_tuning_job_id, dataset_sha256, error, created_at, updated_at,
                 adapter_sha256, base_model_config_sha256, serving_status, serving_error)
               SELECT gen_random_uuid(), orgs.id, 'bench:' || n, 'v' || n || '.0.0', 'bench', 'ready', 0, '', false,
                 0, 0, 0, 1000, (n * 7) %% 300, (n * 5) %% 100, (n * 3) %% 50, (n %% 97) * 100, '', '', '', '',
                 now(), now(), '', '', '', ''
               FROM generate_series(0, %s - 1) AS n JOIN orgs ON orgs.k = n %% %s""",
            [SLUG + "%", f"{SLUG}-{organizations}", models, organizations],
        )
        cursor.execute("ANALYZE model_registry")
        cursor.execute("SELECT id FROM flywheel_organization WHERE slug = %s", [f"{SLUG}-0"])
        full = str(cursor.fetchone()[0])
        cursor.execute("SELECT id FROM flywheel_organization WHERE slug = %s", [f"{SLUG}-{organizations}"])
        empty = str(cursor.fetchone()[0])
    return full, empty


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def variants(full: str, empty: str) -> dict[str, Callable[[], object]]:
    from django.db import connection

    from flywheel.models import Organization
    from registry.selectors import leaderboard

    full_org, empty_org = Organization.objects.get(pk=full), Organization.objects.get(pk=empty)

    def sql(query: str, pool: str) -> Callable[[], object]:
        def run() -> object:
            with connection.cursor() as cursor:
                cursor.execute(query, [pool])
                return cursor.fetchall()

        return run

    def selector_sql(organization: Organization) -> Callable[[], object]:
        query, params = leaderboard(organization=organization, min_samples=0).query.sql_with_params()

        def run() -> object:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                return cursor.fetchall()

        return run

    return {
        "old": sql(OLD, full),
        "view": sql(VIEW, full),
        "selector": selector_sql(full_org),
        "selector_orm": lambda: list(leaderboard(organization=full_org, min_samples=0)),
        "old_empty": sql(OLD, empty),
        "view_empty": sql(VIEW, empty),
        "selector_empty": selector_sql(empty_org),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--organizations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=200)
    options = parser.parse_args()
    setup_django()
    ensure_database()
    full, empty = build(options.models, options.organizations)
    calls = variants(full, empty)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm the plan and the cache
    for _ in range(options.rounds):
        for name, call in calls.items():
            samples[name].append(timed(call))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{options.models} models in {options.organizations} organizations, {options.rounds} interleaved rounds (ms)")
    for name, values in samples.items():
        print(f"  {name:15} median {medians[name]:8.3f}   range {min(values):8.3f} .. {max(values):8.3f}")
    report(medians, options)


def report(medians: dict[str, float], options: argparse.Namespace) -> None:
    per_pool = options.models // options.organizations
    print(f"  speed-up of the view over the old query: {medians['old'] / medians['view']:.1f}x")
    checks = [
        (f"one pool (selector) under {TARGET_MS} ms", medians["selector"] < TARGET_MS),
        (f"one pool (view) under {TARGET_MS} ms", medians["view"] < TARGET_MS),
        (
            f"empty pool no slower than a pool of {per_pool} (view)",
            medians["view_empty"] <= medians["view"] * EMPTY_TOLERANCE,
        ),
        (
            f"empty pool no slower than a pool of {per_pool} (selector)",
            medians["selector_empty"] <= medians["selector"] * EMPTY_TOLERANCE,
        ),
    ]
    for label, passed in checks:
        print(f"  target: {label}: {'PASS' if passed else 'FAIL'}")
    print("PASS" if all(passed for _, passed in checks) else "FAIL")


if __name__ == "__main__":
    main()
