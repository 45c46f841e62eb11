"""Benchmark: ``GET /api/route`` over HTTP against constant endpoints in the same server.

Usage (from the project's root; PostgreSQL, as production runs)::

    DATABASE_URL=postgres://postgres@127.0.0.1:54329/flywheel_bench_api .venv/bin/python bench/api_route.py
    [--rounds 5] [--seconds 3] [--clients 3] [--workers 2]

It starts gunicorn on loopback (``--workers`` sync workers, ``DEBUG`` off, persistent database
connections) serving the project's URLs plus two endpoints that exist only here:

- ``/bench/constant``: authenticates exactly as the API does (API key, permission, per-key
  throttle) and returns a constant;
- ``/bench/constant-anon``: the same view without authentication or permission.

Then a load client (``--clients`` processes, each sending one request at a time over a new
connection, as gunicorn's sync workers close every connection) drives the three endpoints in
turn, ``--rounds`` times, ``--seconds`` each, so that drift in the machine hits all three alike.
It prints requests per second, p50/p99 latency and the workers' CPU per request for each run,
the medians over the rounds, and the ratios against the targets: route >= 0.9x the
authenticated constant (routing adds no query) and, the stretch, route >= 0.6x the
unauthenticated constant (which needs the verified-key cache). On a machine shared with other
work, the paired per-round ratio and the CPU ratio are the steadier figures.

The database is created and migrated when missing; the bench adds one organization named
``bench-route-*`` with one deployed model each time it runs. The rate limit is raised for the
server it starts (the throttle still runs on every request: its cost is part of the figures).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = ("route", "constant", "constant-anon")
PATHS = {"route": "/api/route?lead=lead-{n}", "constant": "/bench/constant", "constant-anon": "/bench/constant-anon"}
TARGET_AUTHENTICATED = 0.9
TARGET_ANONYMOUS = 0.6


# --- The server side: the project's URLs and the two constant endpoints ---------------------------


def wsgi_app() -> Any:
    """gunicorn's factory (``bench.api_route:wsgi_app()``): the project with the bench URLs added."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    settings.ROOT_URLCONF = __name__
    return application


def _urlpatterns() -> list[Any]:
    from django.urls import path
    from rest_framework.permissions import AllowAny
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    class Constant(APIView):
        """Authenticated like every API endpoint; answers a constant."""

        def get(self, request: Request) -> Response:
            return Response({"ok": True})

    class ConstantAnonymous(Constant):
        authentication_classes = []
        permission_classes = [AllowAny]

    # Mounted where the registry's URLs are, so that Django's resolver walks past the same
    # patterns to reach a constant as to reach /api/route.
    from flywheel.urls import urlpatterns as project
    from registry import urls as registry_urls

    at = next(n for n, pattern in enumerate(project) if getattr(pattern, "urlconf_module", None) is registry_urls)
    constants = [path("bench/constant", Constant.as_view()), path("bench/constant-anon", ConstantAnonymous.as_view())]
    return [*project[:at], *constants, *project[at:]]


_patterns: list[Any] = []


def __getattr__(name: str) -> Any:
    # Django's URL resolver reads ``urlpatterns`` only after setup, when the views can be built.
    if name == "urlpatterns":
        if not _patterns:
            _patterns.extend(_urlpatterns())
        return _patterns
    raise AttributeError(name)


# --- Data --------------------------------------------------------------------------------------------


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")
    import django

    django.setup()


def ensure_database() -> None:
    """Create the PostgreSQL database named in DATABASE_URL when it does not exist, then migrate."""
    import psycopg
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("Run this bench on PostgreSQL: set DATABASE_URL=postgres://...")
    params = connection.get_connection_params()
    name = connection.settings_dict["NAME"]
    admin = {key: value for key, value in params.items() if key not in ("dbname", "cursor_factory", "context")}
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as server:
        if not server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            server.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)


def make_tenant() -> str:
    """A fresh organization with one deployed model; returns its agent key."""
    from flywheel.services import api_key_create, organization_create
    from registry.services import model_deploy, model_register

    organization = organization_create(name="bench route", slug=f"bench-route-{time.time_ns()}")
    model = model_register(
        model_id="ft:bench:route",
        model_version="v1.0.0",
        base_model="bench",
        organization=organization,
        provider="openai",  # its route answer carries a base URL, read from the settings
    )
    model_deploy(model=model, traffic_percentage=100)
    _, key = api_key_create(organization=organization, role="agent")
    return key


# --- The load client ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "CONN_MAX_AGE": "600",
        "API_RATE_LIMIT": "1000000000/s",
        "LOG_LEVEL": "ERROR",
    }
    command = [sys.executable, "-m", "gunicorn", "bench.api_route:wsgi_app()", "--chdir", str(ROOT)]
    command += ["-b", f"127.0.0.1:{port}", "-w", str(workers), "--log-level", "warning"]
    server = subprocess.Popen(command, env=env, cwd=ROOT)  # noqa: S603 - our own interpreter and arguments
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, _ = request(port, "/bench/constant-anon", None)
            if status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not answer within 30 s")


def request(port: int, path: str, key: str | None) -> tuple[int, bytes]:
    """One GET over a new connection; the status and the body."""
    auth = f"Authorization: Api-Key {key}\r\n" if key else ""
    raw = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(raw)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    return int(answer[9:12]), answer.partition(b"\r\n\r\n")[2]


def client(port: int, endpoint: str, key: str, seconds: float, queue: Any) -> None:
    """Send requests one after another for ``seconds``; report the latencies and any failures."""
    latencies: list[float] = []
    failures = 0
    n = 0
    stop = time.perf_counter() + seconds
    while (start := time.perf_counter()) < stop:
        status, _ = request(port, PATHS[endpoint].format(n=n % 1000), key)
        latencies.append(time.perf_counter() - start)
        failures += status != 200
        n += 1
    queue.put((latencies, failures))


def worker_cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    """CPU time (user + system) used so far by the gunicorn workers of ``server``."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    total = 0
    for pid in children:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime and stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def run(
    server: subprocess.Popen[bytes], port: int, endpoint: str, key: str, seconds: float, clients: int
) -> dict[str, float]:
    """One run of ``clients`` processes against ``endpoint``: requests per second, p50 and p99.

    Also the workers' CPU per request, which other processes on the machine disturb far less
    than throughput (it leaves out PostgreSQL's share).
    """
    cpu_before = worker_cpu_seconds(server)
    queue: Any = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=client, args=(port, endpoint, key, seconds, queue)) for _ in range(clients)
    ]
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    cpu = worker_cpu_seconds(server) - cpu_before
    latencies = sorted(latency for batch, _ in results for latency in batch)
    failures = sum(failed for _, failed in results)
    if failures:
        raise SystemExit(f"{endpoint}: {failures} request(s) did not answer 200")
    return {
        "rps": len(latencies) / seconds,
        "cpu_us": cpu / len(latencies) * 1e6,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    setup_django()
    ensure_database()
    key = make_tenant()
    from django.db import connections

    connections.close_all()
    port = free_port()
    server = start_server(port, options.workers)
    try:
        status, body = request(port, "/api/route?lead=check", key)
        assert status == 200, body
        for endpoint in ENDPOINTS:  # warm every worker's caches
            run(server, port, endpoint, key, 1.0, options.clients)
        figures: dict[str, list[dict[str, float]]] = {endpoint: [] for endpoint in ENDPOINTS}
        for round_number in range(1, options.rounds + 1):
            for endpoint in ENDPOINTS:
                result = run(server, port, endpoint, key, options.seconds, options.clients)
                figures[endpoint].append(result)
                print(
                    f"round {round_number} {endpoint:<14} {result['rps']:8.0f} req/s"
                    f"  p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms"
                    f"  worker CPU {result['cpu_us']:5.0f} us/req"
                )
    finally:
        server.terminate()
        server.wait()
    report(figures)


def report(figures: dict[str, list[dict[str, float]]]) -> None:
    """Medians over the rounds, and the ratios: of the medians, and the median of each round's ratio."""
    names = ("rps", "p50", "p99", "cpu_us")
    medians = {
        endpoint: {name: statistics.median(run[name] for run in runs) for name in names}
        for endpoint, runs in figures.items()
    }
    print("\nmedians over the rounds")
    for endpoint, m in medians.items():
        print(
            f"  {endpoint:<14} {m['rps']:8.0f} req/s  p50 {m['p50']:6.2f} ms  p99 {m['p99']:6.2f} ms"
            f"  worker CPU {m['cpu_us']:5.0f} us/req"
        )
    for other, target, label in (
        ("constant", TARGET_AUTHENTICATED, "authenticated constant"),
        ("constant-anon", TARGET_ANONYMOUS, "unauthenticated constant (stretch)"),
    ):
        of_medians = medians["route"]["rps"] / medians[other]["rps"]
        paired = statistics.median(r["rps"] / o["rps"] for r, o in zip(figures["route"], figures[other], strict=True))
        cpu = medians[other]["cpu_us"] / medians["route"]["cpu_us"]
        print(
            f"route / {label}: {of_medians:.2f}x of medians, {paired:.2f}x median of rounds, "
            f"{cpu:.2f}x by worker CPU (target >= {target}x)"
        )


if __name__ == "__main__":
    main()
