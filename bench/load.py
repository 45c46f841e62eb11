"""Bounded load test: mixed route, outcome and event traffic against gunicorn on PostgreSQL.

Usage (from the project's root)::

    DATABASE_URL=postgres://postgres@127.0.0.1:54329/flywheel_load .venv/bin/python bench/load.py
    [--seconds 300] [--clients 4] [--workers 2]

It starts gunicorn on loopback (production settings: ``DEBUG`` off, persistent connections),
creates an organization with a deployed model and an agent key, then ``--clients`` processes send
requests one after another for ``--seconds``: 60 % ``GET /api/route``, 25 % ``POST /api/outcomes``
(one new outcome, attributed to the routed model) and 15 % ``POST /api/outcomes/events`` (a batch
of 20 events on outcomes this client created, some of them repeats). It prints requests per
second, p50 and p99 latency per kind and overall, and the count of 5xx answers; it exits 1 when
any answer was a 5xx or a connection failed. Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import sys
import time
from collections import defaultdict
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_route import ensure_database, free_port, make_tenant, setup_django, start_server

KINDS = (("route", 0.60), ("outcome", 0.25), ("events", 0.15))
EVENT_TYPES = ("delivered", "opened", "replied", "meeting_booked")


def send(port: int, method: str, path: str, key: str, body: Any = None) -> int:
    connection = HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def one_request(port: int, key: str, kind: str, state: dict[str, Any]) -> int:
    n = state["n"] = state["n"] + 1
    if kind == "route":
        return send(port, "GET", f"/api/route?lead=lead-{state['seed']}-{n % 5000}", key)
    if kind == "outcome":
        external_id = f"load-{state['seed']}-{n}"
        state["sent"].append(external_id)
        item = {"external_id": external_id, "model": state["model"], "subject": "Hello", "body": f"Hi there #{n}"}
        return send(port, "POST", "/api/outcomes", key, item)
    if not state["sent"]:
        return send(port, "GET", f"/api/route?lead=lead-{n}", key)
    picks = [random.choice(state["sent"]) for _ in range(20)]
    events = [{"external_id": external_id, "type": random.choice(EVENT_TYPES)} for external_id in picks]
    return send(port, "POST", "/api/outcomes/events", key, events)


def client(port: int, key: str, model: str, seconds: float, seed: int, queue: Any) -> None:
    """Send mixed requests one after another for ``seconds``; report latencies and failures per kind."""
    random.seed(seed)
    state: dict[str, Any] = {"n": 0, "sent": [], "seed": seed, "model": model}
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    refused: dict[str, int] = defaultdict(int)
    kinds = [kind for kind, _ in KINDS]
    weights = [weight for _, weight in KINDS]
    stop = time.perf_counter() + seconds
    while (start := time.perf_counter()) < stop:
        kind = random.choices(kinds, weights)[0]
        try:
            status = one_request(port, key, kind, state)
        except OSError:
            status = 599
        latencies[kind].append(time.perf_counter() - start)
        errors[kind] += status >= 500
        refused[kind] += 400 <= status < 500
    queue.put((dict(latencies), dict(errors), dict(refused)))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def report(latencies: dict[str, list[float]], errors: dict[str, int], refused: dict[str, int], seconds: float) -> int:
    print(f"{'kind':<8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'4xx':>5} {'5xx':>5}")
    everything: list[float] = []
    for kind, _ in KINDS:
        values = latencies.get(kind, [])
        everything += values
        print(
            f"{kind:<8} {len(values):>9} {len(values) / seconds:>8.1f} {statistics.median(values or [0]) * 1e3:>8.1f} "
            f"{percentile(values, 0.99) * 1e3:>8.1f} {refused.get(kind, 0):>5} {errors.get(kind, 0):>5}"
        )
    failures = sum(errors.values())
    print(
        f"{'all':<8} {len(everything):>9} {len(everything) / seconds:>8.1f} "
        f"{statistics.median(everything or [0]) * 1e3:>8.1f} {percentile(everything, 0.99) * 1e3:>8.1f} "
        f"{sum(refused.values()):>5} {failures:>5}"
    )
    print(f"target: 0 server errors: {'PASS' if failures == 0 else 'FAIL'}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    setup_django()
    ensure_database()
    key = make_tenant()
    from registry.models import RegisteredModel

    model = str(RegisteredModel.objects.filter(model_id="ft:bench:route").latest("created_at").pk)
    port = free_port()
    server = start_server(port, options.workers)
    queue: Any = multiprocessing.Queue()
    try:
        clients = [
            multiprocessing.Process(target=client, args=(port, key, model, options.seconds, seed, queue))
            for seed in range(options.clients)
        ]
        for process in clients:
            process.start()
        results = [queue.get(timeout=options.seconds + 120) for _ in clients]
        for process in clients:
            process.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    refused: dict[str, int] = defaultdict(int)
    for client_latencies, client_errors, client_refused in results:
        for kind, values in client_latencies.items():
            latencies[kind] += values
        for kind, count in client_errors.items():
            errors[kind] += count
        for kind, count in client_refused.items():
            refused[kind] += count
    return report(latencies, errors, refused, options.seconds)


if __name__ == "__main__":
    sys.exit(main())
