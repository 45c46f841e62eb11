"""Concurrent writers of overlapping funnel-event batches: errors, and whether the counters are exact.

Usage (PostgreSQL; the database of ``DATABASE_URL`` is created and migrated when missing)::

    DATABASE_URL=postgres://postgres@127.0.0.1:54329/flywheel_bench_concurrent \\
        .venv/bin/python bench/concurrent_events.py [--writers 6] [--events 2000] [--labels 1000] [--batch 500]

Each run makes a fresh organization with ``--labels`` labels attributed to two models. Every writer
(a thread with its own connection) sends ``--events`` events drawn, with its own seed, from the same
pool of replied / meeting_booked / deal_closed events on those labels, in its own shuffled order,
in batches of ``--batch`` through ``outcome_event_record_bulk``; all writers start together.

The script prints the batches that raised (a deadlock, a serialization failure, ...) and compares
each model's counters with what the accepted batches should have added: each (label, stage) once,
each closed deal's value once. It exits 1 unless there were no errors and every counter is exact.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_route import ensure_database, setup_django

KINDS = ("replied", "meeting_booked", "deal_closed")
COUNTERS = {"replied": "total_replies", "meeting_booked": "total_meetings_booked", "deal_closed": "total_deals_closed"}


def deal_value(label: int) -> Decimal:
    """Each label's deal is worth the same in every writer's events, so the revenue is exact."""
    return Decimal(1000 + label) + Decimal("0.25")


def make_labels(count: int) -> tuple[Any, list[Any]]:
    """A fresh organization, two models and ``count`` labels attributed to them in turn."""
    from flywheel.services import organization_create
    from outcomes.serializers import outcome_items_from
    from outcomes.services import outcome_upsert_bulk
    from registry.services import model_register, model_set_baseline

    organization = organization_create(name="bench concurrent", slug=f"bench-concurrent-{time.time_ns()}")
    models = [
        model_register(model_id=f"bench:{n}", model_version=f"v{n}.0.0", base_model="bench", organization=organization)
        for n in (1, 2)
    ]
    model_set_baseline(model=models[0])  # every counter change also refreshes the pool's comparisons
    for start in range(0, count, 1000):
        items = outcome_items_from(
            {"external_id": f"c-{n}", "body": "b", "model": str(models[n % 2].pk)}
            for n in range(start, min(start + 1000, count))
        )
        outcome_upsert_bulk(organization=organization, items=items)
    return organization, models


def writer_batches(seed: int, labels: int, events: int, batch: int) -> list[list[Any]]:
    """One writer's events: a seeded sample of the shared pool, shuffled, cut into batches."""
    from django.utils import timezone

    from outcomes.services import EventItem

    pool = [(label, kind) for label in range(labels) for kind in KINDS]
    chosen = random.Random(seed).sample(pool, min(events, len(pool)))
    now = timezone.now()
    items = [
        EventItem(
            external_id=f"c-{label}",
            type=kind,
            occurred_at=now,
            deal_value=deal_value(label) if kind == "deal_closed" else None,
        )
        for label, kind in chosen
    ]
    return [items[at : at + batch] for at in range(0, len(items), batch)]


def count_retries() -> list[int]:
    """Count the transactions run again after a deadlock or serialization failure (the list's length)."""
    from outcomes import services

    retried: list[int] = []
    pause = getattr(services, "pause", None)
    if pause is None:  # a version without retries
        return retried

    def counted(attempt: int) -> None:
        retried.append(attempt)
        pause(attempt)

    services.pause = counted
    return retried


def run_writers(organization: Any, plans: list[list[list[Any]]]) -> tuple[list[list[Any]], list[str]]:
    """Run every writer at once; the batches that were accepted and the errors of the others."""
    from django.db import connections

    from outcomes.services import outcome_event_record_bulk

    barrier = threading.Barrier(len(plans))
    accepted: list[list[Any]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def write(batches: list[list[Any]]) -> None:
        barrier.wait()
        try:
            for items in batches:
                try:
                    outcome_event_record_bulk(organization=organization, events=items)
                except Exception as exc:  # what an API client would see as a 500
                    with lock:
                        errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                    continue
                with lock:
                    accepted.append(items)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(batches,)) for batches in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return accepted, errors


def expected_counts(accepted: list[list[Any]], models: list[Any]) -> dict[Any, dict[str, Any]]:
    """What each model's counters should have gained: each (label, stage) once, each deal once."""
    seen = {(event.external_id, event.type) for items in accepted for event in items}
    expected: dict[Any, dict[str, Any]] = {
        model.pk: {**dict.fromkeys(COUNTERS.values(), 0), "total_revenue": Decimal(0)} for model in models
    }
    for external_id, kind in seen:
        label = int(external_id.removeprefix("c-"))
        counts = expected[models[label % 2].pk]
        counts[COUNTERS[kind]] += 1
        if kind == "deal_closed":
            counts["total_revenue"] += deal_value(label)
    return expected


def not_counted(plans: list[list[list[Any]]], accepted: list[list[Any]], models: list[Any]) -> dict[str, Any]:
    """What every event sent should have added, less what the accepted batches added, over both models."""
    sent = expected_counts([items for batches in plans for items in batches], models)
    kept = expected_counts(accepted, models)
    return {column: sum(sent[m.pk][column] - kept[m.pk][column] for m in models) for column in sent[models[0].pk]}


def report(models: list[Any], expected: dict[Any, dict[str, Any]], errors: list[str]) -> bool:
    from registry.models import RegisteredModel

    exact = True
    for model in models:
        actual = RegisteredModel.objects.filter(pk=model.pk).values(*expected[model.pk]).get()
        same = actual == expected[model.pk]
        exact &= same
        print(f"model {model.model_version}: {'exact' if same else 'WRONG'}  actual {actual}")
        if not same:
            print(f"{'':16}expected {expected[model.pk]}")
    kinds = collections.Counter(error.split(":")[0] for error in errors)
    print(f"errors: {len(errors)} batch(es) {dict(kinds) if kinds else ''}")
    for error in sorted(set(errors))[:5]:
        print(f"  {error}")
    print(f"counters exact: {'yes' if exact else 'NO'}")
    return exact and not errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=6)
    parser.add_argument("--events", type=int, default=2000, help="events per writer")
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    setup_django()
    ensure_database()
    organization, models = make_labels(args.labels)
    plans = [writer_batches(args.seed * 1000 + n, args.labels, args.events, args.batch) for n in range(args.writers)]
    retried = count_retries()
    started = time.perf_counter()
    accepted, errors = run_writers(organization, plans)
    elapsed = time.perf_counter() - started
    total = sum(len(items) for batches in plans for items in batches)
    print(f"{args.writers} writers x {args.events} events over {args.labels} labels, batches of {args.batch}")
    print(f"{total} events in {elapsed:.2f} s ({total / elapsed:.0f} events/s)")
    print(f"batches accepted: {len(accepted)} of {sum(len(batches) for batches in plans)}; retried: {len(retried)}")
    ok = report(models, expected_counts(accepted, models), errors)
    print(f"not counted of every event sent (the refused batches): {not_counted(plans, accepted, models)}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
