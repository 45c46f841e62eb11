"""The database goes away and comes back while agents call the API: answers stay clean, service resumes.

Usage (from the project's root; PostgreSQL)::

    DATABASE_URL=postgres://... .venv/bin/python bench/db_restart.py \\
        --stop "pg_ctl -D DATA -m fast -w stop" --start "pg_ctl -D DATA -w start" [--outage 4]

It starts gunicorn on loopback (production settings, persistent connections), creates an
organization with a deployed model, and two clients call ``GET /api/route`` without pause. After
three seconds it runs ``--stop``, waits ``--outage`` seconds, runs ``--start`` and lets the clients
go on for ten more seconds. Targets: every answer is a 200, or a 503 in the JSON error shape with
``Retry-After`` (never a 500 or an HTML page); at least one 503 is seen while the database is down
(so the outage was real); and the answers are 200 again within 5 seconds of the restart. Exits 1
when a target is missed. Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_route import ensure_database, free_port, make_tenant, setup_django, start_server

RECOVERY_TARGET = 5.0


def call(port: int, key: str, n: int) -> tuple[float, int, bool]:
    """One route call: when it was answered, its status, and whether a non-200 was the clean 503."""
    connection = HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", f"/api/route?lead=lead-{n}", headers={"Authorization": f"Api-Key {key}"})
        response = connection.getresponse()
        body = response.read()
    except OSError:
        return time.monotonic(), 599, False
    finally:
        connection.close()
    clean = response.status == 200
    if response.status == 503:
        try:
            clean = "error" in json.loads(body) and response.getheader("Retry-After") is not None
        except ValueError:
            clean = False
    return time.monotonic(), response.status, clean


def drive(port: int, key: str, until: float, answers: list[tuple[float, int, bool]]) -> None:
    n = 0
    while time.monotonic() < until:
        answers.append(call(port, key, n))
        n += 1


def verdict(answers: list[tuple[float, int, bool]], stopped: float, started: float) -> int:
    unclean = [status for _, status, clean in answers if not clean]
    outage = [status for at, status, _ in answers if stopped <= at <= started]
    after = [(at, status) for at, status, _ in answers if at > started]
    first_bad_after = max((at for at, status in after if status != 200), default=started)
    recovery = first_bad_after - started
    late = [(round(at - started, 1), status) for at, status in after if status != 200]
    print(f"non-200 answers after the restart (seconds after it, status): {late[:5]} ... {late[-5:]}")
    print(f"answers: {len(answers)}; during the outage: {len(outage)} ({outage.count(503)} were 503)")
    print(f"unclean answers (not 200, not a JSON 503 with Retry-After): {len(unclean)} {sorted(set(unclean))}")
    print(f"back to 200 within {recovery:.1f} s of the restart (target ≤ {RECOVERY_TARGET} s)")
    failed = bool(unclean) or not outage.count(503) or recovery > RECOVERY_TARGET
    print(f"targets: {'FAIL' if failed else 'PASS'}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop", required=True, help="a shell command that stops the database server")
    parser.add_argument("--start", required=True, help="a shell command that starts it again")
    parser.add_argument("--outage", type=float, default=4.0)
    options = parser.parse_args()
    setup_django()
    ensure_database()
    key = make_tenant()
    port = free_port()
    server = start_server(port, 2)
    answers: list[tuple[float, int, bool]] = []
    try:
        until = time.monotonic() + 3 + options.outage + 15
        clients = [threading.Thread(target=drive, args=(port, key, until, answers)) for _ in range(2)]
        for thread in clients:
            thread.start()
        time.sleep(3)
        subprocess.run(shlex.split(options.stop), check=True)  # noqa: S603 - the operator's own command
        stopped = time.monotonic()
        time.sleep(options.outage)
        subprocess.run(shlex.split(options.start), check=True)  # noqa: S603
        started = time.monotonic()
        for thread in clients:
            thread.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return verdict(answers, stopped, started)


if __name__ == "__main__":
    sys.exit(main())
