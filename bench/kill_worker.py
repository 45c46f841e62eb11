"""kill -9 of a django-q2 cluster in the middle of a step, then a restart: how long until the run goes on.

Usage (from the project's root)::

    .venv/bin/python bench/kill_worker.py [--bound 300]
    DATABASE_URL=postgres://postgres@127.0.0.1:54329/flywheel_kill .venv/bin/python bench/kill_worker.py

The script serves the OpenAI stand-in of ``tests/training/fake_openai.py`` on loopback, starts a
``manage.py qcluster`` (ORM broker, two workers) in its own process group, installs the resume
schedule and starts a training run on the openai provider. The stand-in creates the job at once
but holds its answer back, so the worker is caught with the create request in flight; the script
then kills the whole cluster with SIGKILL, starts a new one at once, and measures the time from
the kill until another worker claims the step and until the run reaches ``training``. It also
counts the jobs and files created at the stand-in (target: one of each). Everything runs on
loopback and stops after ``--bound`` seconds at most. Without ``DATABASE_URL`` a scratch SQLite
file in the temporary directory is used.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="flywheel-kill-"))
RESUME_TARGET = 120.0
HOLD_ANSWER = 600.0  # the create answer never comes back before the kill


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{WORK / 'db.sqlite3'}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")
    os.environ.update(MEDIA_ROOT=str(WORK / "media"), Q_SYNC="false")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def start_cluster(env: dict[str, str], number: int) -> subprocess.Popen[bytes]:
    log = (WORK / f"qcluster-{number}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
    )


def wait_for(check: Any, bound: float, step: float = 0.2) -> float | None:
    """Seconds until ``check()`` is true, or None after ``bound`` seconds."""
    began = time.monotonic()
    while time.monotonic() - began < bound:
        if check():
            return time.monotonic() - began
        time.sleep(step)
    return None


def prepare(fake: Any) -> Any:
    """The organization, its labels, the resume schedule and the run, which a worker then takes."""
    from tests.factories import OrganizationFactory
    from tests.training.helpers import make_labels
    from training.schedules import training_schedules_ensure
    from training.services import training_run_start

    organization = OrganizationFactory.create(slug=f"kill-{int(time.time())}")
    make_labels(organization, positives=12)
    training_schedules_ensure(include_global=False, organizations=[])
    fake.delay_after("jobs.create", HOLD_ANSWER)
    return training_run_start(organization=organization, triggered_by="command", actor=None)


def measure(fake: Any, run: Any, env: dict[str, str], bound: float) -> dict[str, Any]:
    """Kill the cluster once the job was created, restart it, time the run's recovery."""
    from training.models import TrainingRun

    first = start_cluster(env, 1)
    clusters = [first]
    try:
        if wait_for(lambda: fake.requests_to("jobs.create"), bound) is None:
            raise SystemExit("the worker never sent the job creation; see " + str(WORK))
        dead_claim = TrainingRun.objects.get(pk=run.pk).claimed_at
        os.killpg(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        clusters.append(start_cluster(env, 2))

        def claimed_again() -> bool:
            return TrainingRun.objects.get(pk=run.pk).claimed_at not in (dead_claim,)

        reclaimed = wait_for(claimed_again, bound)
        reclaimed_after = round(time.monotonic() - killed, 1) if reclaimed is not None else None
        training = wait_for(lambda: TrainingRun.objects.get(pk=run.pk).status != "uploading", bound)
        return {
            "claimed again after kill (s)": reclaimed_after,
            "training after kill (s)": round(time.monotonic() - killed, 1) if training is not None else None,
            "run": TrainingRun.objects.get(pk=run.pk).status,
            "jobs created": len(fake.jobs),
            "job creations sent": len(fake.requests_to("jobs.create")),
            "files created": len(fake.files) + len(fake.deleted_files),
        }
    finally:
        for cluster in clusters:
            if cluster.poll() is None:
                os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bound", type=float, default=300.0, help="seconds each wait may last")
    bound = parser.parse_args().bound
    setup_django()
    from django_q.conf import Conf

    from tests.training.fake_openai import FakeOpenAI

    Conf.SYNC = False
    fake = FakeOpenAI(api_key="sk-test").start()
    env = {
        **os.environ,
        "FINE_TUNING_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_TIMEOUT": str(HOLD_ANSWER * 2),
        "TRAINING_MIN_EXAMPLES": "10",
        "TRAINING_POLL_INTERVAL": "5",
        "TRAINING_POLL_INTERVALS": "openai=5",  # openai declares 60 s of its own
    }
    os.environ.update({key: env[key] for key in ("FINE_TUNING_PROVIDER", "TRAINING_MIN_EXAMPLES")})
    from django.conf import settings

    settings.FINE_TUNING_PROVIDER, settings.TRAINING_MIN_EXAMPLES = "openai", 10
    try:
        result = measure(fake, prepare(fake), env, bound)
    finally:
        fake.stop()
    for key, value in result.items():
        print(f"{key:32} {value}")
    print(f"logs in {WORK}")
    resumed = result["training after kill (s)"]
    met = resumed is not None and resumed <= RESUME_TARGET and result["jobs created"] == 1
    met = met and result["files created"] == 1
    print(f"target: the run goes on within {RESUME_TARGET:.0f} s, one job and one file: {'PASS' if met else 'FAIL'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
