"""Benchmark: funnel events per second through ``POST /api/outcomes/events`` against raw psycopg.

Usage (from the project's root; PostgreSQL)::

    DATABASE_URL=postgres://postgres@127.0.0.1:54329/flywheel_bench_api .venv/bin/python bench/api_events.py
    [--rounds 5] [--events 10000] [--workers 2]

Each run gets fresh outcome labels attributed to one model (so that every event changes a row
and replies move the model's counters), then sends ``--events`` events (a ``delivered`` and a
``replied`` per label) in batches of 500:

- ``api``: one client posting the batches one after another to gunicorn on loopback
  (``--workers`` sync workers, ``DEBUG`` off): JSON, authentication, per-item validation, the
  set-based service, per-item results;
- ``raw``: the floor, on one psycopg connection: per batch, ``executemany`` of the same
  conditional updates (set a stage's time where it is still empty, ``RETURNING`` the model)
  and then one increment of the model's counters, one transaction per batch.

The two alternate for ``--rounds`` rounds (the order flips each round); the bench prints each
run, the medians with their range and the ratio (target >= 0.8x raw, PASS/FAIL). The database is created and
migrated when missing; each run adds an organization named ``bench-events-*``.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# The sibling module, imported by its file name as ``python bench/api_events.py`` puts bench/ first
# on the path (and as mypy names the files of bench/, which is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_route import ensure_database, free_port, setup_django, start_server

BATCH = 500
TARGET = 0.8
RAW_SQL = {
    "delivered": (
        "UPDATE outcome_labels SET delivered_at = %s, updated_at = now() "
        "WHERE organization_id = %s AND external_id = %s AND delivered_at IS NULL RETURNING model_id"
    ),
    "replied": (
        "UPDATE outcome_labels SET replied_at = %s, updated_at = now() "
        "WHERE organization_id = %s AND external_id = %s AND replied_at IS NULL RETURNING model_id"
    ),
}


def make_labels(count: int) -> tuple[Any, Any, str]:
    """A fresh organization with ``count`` labels of one model; the organization, the model and an agent key."""
    from django.db import connection

    from flywheel.services import api_key_create, organization_create
    from outcomes.models import OutcomeLabel
    from registry.models import RegisteredModel

    organization = organization_create(name="bench events", slug=f"bench-events-{time.time_ns()}")
    model = RegisteredModel.objects.create(
        organization=organization, model_id="ft:bench:events", model_version="v1.0.0", base_model="bench"
    )
    labels = [
        OutcomeLabel(organization=organization, external_id=f"msg-{n}", body=f"Message {n}", model=model)
        for n in range(count)
    ]
    OutcomeLabel.objects.bulk_create(labels, batch_size=2000)
    RegisteredModel.objects.filter(pk=model.pk).update(total_messages_sent=count)
    # Fresh statistics, as autovacuum keeps them in production: with stale ones the planner takes
    # the new organization for a single row and scans its labels once per raw UPDATE.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outcome_labels")
    _, key = api_key_create(organization=organization, role="agent")
    return organization, model, key


def events_for(count: int) -> list[dict[str, Any]]:
    """``count`` events: a delivered and then a replied event for each label, an hour apart."""
    kinds = ("delivered", "replied")
    return [
        {"external_id": f"msg-{n // 2}", "type": kinds[n % 2], "occurred_at": f"2025-01-20T{9 + n % 2:02d}:00:00Z"}
        for n in range(count)
    ]


def run_api(port: int, count: int) -> float:
    """Events per second through the endpoint, one batch at a time."""
    import orjson

    from registry.models import RegisteredModel

    _, model, key = make_labels(count // 2)
    events = events_for(count)
    headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
    bodies = [orjson.dumps(events[at : at + BATCH]) for at in range(0, count, BATCH)]
    start = time.perf_counter()
    for body in bodies:
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.request("POST", "/api/outcomes/events", body=body, headers=headers)
        response = connection.getresponse()
        answer = orjson.loads(response.read())
        connection.close()
        if response.status != 200 or answer["failed"]:
            raise SystemExit(f"the API refused a batch: {response.status} {str(answer)[:300]}")
    elapsed = time.perf_counter() - start
    assert RegisteredModel.objects.get(pk=model.pk).total_replies == count // 2
    return count / elapsed


def run_raw(count: int) -> float:
    """Events per second for the same conditional updates and counter increments through raw psycopg."""
    import datetime

    import psycopg
    from django.db import connection as django_connection

    organization, model, _ = make_labels(count // 2)
    events = events_for(count)
    params = django_connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as connection:
        start = time.perf_counter()
        for at in range(0, count, BATCH):
            raw_batch(connection, organization.pk, events[at : at + BATCH], datetime)
        elapsed = time.perf_counter() - start
        replies = connection.execute("SELECT total_replies FROM model_registry WHERE id = %s", [model.pk]).fetchone()
    assert replies is not None and replies[0] == count // 2
    return count / elapsed


def raw_batch(connection: Any, organization_id: Any, batch: list[dict[str, Any]], datetime: Any) -> None:
    """One batch: per type an ``executemany`` of conditional updates, then the counter increments."""
    replies: dict[Any, int] = {}
    with connection.transaction(), connection.cursor() as cursor:
        for kind, sql in RAW_SQL.items():
            rows = [
                (datetime.datetime.fromisoformat(e["occurred_at"]), organization_id, e["external_id"])
                for e in batch
                if e["type"] == kind
            ]
            cursor.executemany(sql, rows, returning=True)
            while True:
                for (model_id,) in cursor.fetchall():
                    if kind == "replied" and model_id is not None:
                        replies[model_id] = replies.get(model_id, 0) + 1
                if not cursor.nextset():
                    break
        for model_id, count in sorted(replies.items(), key=lambda item: str(item[0])):
            cursor.execute(
                "UPDATE model_registry SET total_replies = total_replies + %s WHERE id = %s", [count, model_id]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    setup_django()
    ensure_database()
    from django.db import connections

    connections.close_all()
    port = free_port()
    server = start_server(port, options.workers)
    rates: dict[str, list[float]] = {"api": [], "raw": []}
    try:
        run_api(port, 2 * BATCH)  # warm the workers
        for round_number in range(1, options.rounds + 1):
            order = ("api", "raw") if round_number % 2 else ("raw", "api")
            for name in order:
                rate = run_api(port, options.events) if name == "api" else run_raw(options.events)
                rates[name].append(rate)
                print(f"round {round_number} {name:<4} {rate:9.0f} events/s")
    finally:
        server.terminate()
        server.wait()
    api, raw = statistics.median(rates["api"]), statistics.median(rates["raw"])
    spread = {name: f"[{min(values):.0f}-{max(values):.0f}]" for name, values in rates.items()}
    print(
        f"\nmedians: api {api:.0f} {spread['api']} events/s, raw psycopg executemany {raw:.0f} {spread['raw']} events/s"
    )
    verdict = "PASS" if api / raw >= TARGET else "FAIL"
    print(f"api / raw: {api / raw:.2f}x (target >= {TARGET}x): {verdict}")


if __name__ == "__main__":
    main()
