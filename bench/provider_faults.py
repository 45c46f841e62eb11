"""Provider faults against the OpenAI stand-in: how many files and jobs one training run leaves.

Usage (from the project's root)::

    .venv/bin/python bench/provider_faults.py
    DATABASE_URL=postgres://postgres@127.0.0.1:54329/flywheel_bench .venv/bin/python bench/provider_faults.py

For each fault, one run of a fresh organization is driven through the real openai client over
HTTP against the stand-in of ``tests/training/fake_openai.py`` on loopback, with the client's
production retry count (``OPENAI_MAX_RETRIES``) and a short timeout, until it ends. The run's
retries wait no time here (``TRAINING_RETRY_DELAYS`` of zeros): the count of tries is what the
production schedule allows, only the waiting is skipped. A crash while the job was being created
is replayed as the worker left it: the job made at the provider, not recorded, the claim expired.
The table gives, per fault, the run's end, the files and jobs created at the provider and the
jobs still running besides the run's own (billed, polled by nobody). Target: one file and one job
per run, no orphan, whatever the fault. Without ``DATABASE_URL`` a scratch SQLite file in the
temporary directory is used.
"""

import datetime
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRATCH_SQLITE = Path(tempfile.gettempdir()) / "flywheel_bench_faults.sqlite3"
TIMEOUT = 0.5
SLOW = 1.5


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    SCRATCH_SQLITE.unlink(missing_ok=True)
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{SCRATCH_SQLITE}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def crash_while_creating(fake: Any, run: Any) -> None:
    """The worker sent the create request and was killed before it could record the answer."""
    from django.utils import timezone

    from training.datasets.storage import dataset_local_copy
    from training.models import TrainingRun
    from training.providers import get_provider

    provider = get_provider("openai")
    with dataset_local_copy(run.dataset_path) as path:
        file_id = run.provider_file_id or provider.upload_training_file(path)
    provider.create_job(training_file=file_id, model=run.base_model, metadata={"training_run_id": str(run.pk)})
    dead = timezone.now() - datetime.timedelta(hours=1)
    TrainingRun.objects.filter(pk=run.pk).update(provider_file_id=file_id, claimed_at=dead)


FAULTS: dict[str, Callable[[Any], None]] = {
    "none": lambda fake: None,
    "502 after the file was created": lambda fake: fake.fail_after("files.create", 502),
    "502 after the job was created": lambda fake: fake.fail_after("jobs.create", 502),
    "file answer slower than the timeout": lambda fake: fake.delay_after("files.create", SLOW),
    "job answer slower than the timeout": lambda fake: fake.delay_after("jobs.create", SLOW),
    "every job answer slower than the timeout": lambda fake: fake.delay_after("jobs.create", SLOW, times=20),
    "six 429s on job creation": lambda fake: fake.fail_next("jobs.create", 429, times=6),
}


def drive(run: Any, limit: int = 60) -> Any:
    """Advance the run as the workers would (polls included), letting any retry's wait pass at once."""
    from django.utils import timezone

    from training.models import TrainingRun
    from training.services import training_run_advance

    for _ in range(limit):
        run.refresh_from_db()
        if not run.is_active:
            break
        if getattr(run, "retry_at", None) is not None:
            TrainingRun.objects.filter(pk=run.pk).update(retry_at=timezone.now())
            run.refresh_from_db()
        training_run_advance(run=run)
    return run


def one_run(name: str, fault: Callable[[Any], None] | None, crash: bool) -> dict[str, Any]:
    """Drive one run of a fresh organization under ``fault``; what it left at the provider."""
    from django.conf import settings

    from tests.factories import OrganizationFactory
    from tests.training.fake_openai import FakeOpenAI
    from tests.training.helpers import drive_to, make_labels
    from training.models import TrainingRun
    from training.services import training_run_start

    fake = FakeOpenAI(api_key="sk-test").start()
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY, settings.OPENAI_TIMEOUT = fake.base_url, "sk-test", TIMEOUT
    try:
        organization = OrganizationFactory.create()
        make_labels(organization, positives=12)
        run = training_run_start(organization=organization, triggered_by="command", actor=None)
        if crash:
            crash_while_creating(fake, drive_to(run, TrainingRun.Status.UPLOADING))
        elif fault is not None:
            fault(fake)
        run = drive(run)
        running = [j for j in fake.jobs.values() if j["id"] != run.provider_job_id and j["status"] != "cancelled"]
        created_files = len(fake.files) + len(fake.deleted_files) if hasattr(fake, "deleted_files") else len(fake.files)
        return {
            "fault": name,
            "run": run.status,
            "files": created_files,
            "jobs": len(fake.jobs),
            "orphans running": len(running),
        }
    finally:
        fake.stop()


def main() -> int:
    setup_django()
    from django.conf import settings
    from django_q.conf import Conf

    Conf.SYNC = False  # tasks stay in the queue; this script drives the run itself
    settings.FINE_TUNING_PROVIDER = "openai"
    settings.TRAINING_MIN_EXAMPLES = 10
    settings.TRAINING_RETRY_DELAYS = (0,) * 7
    settings.MEDIA_ROOT = tempfile.mkdtemp(prefix="flywheel-faults-")
    settings.TRAINING_DATA_DIR = str(Path(settings.MEDIA_ROOT) / "training_data")
    rows = [one_run(name, fault, crash=False) for name, fault in FAULTS.items()]
    rows.append(one_run("kill -9 while the job was being created", None, crash=True))
    print(f"OPENAI_MAX_RETRIES={settings.OPENAI_MAX_RETRIES}, client timeout {TIMEOUT} s, slow answers {SLOW} s")
    print(f"{'fault':44} {'run':10} {'files':>5} {'jobs':>5} {'orphans running':>16}")
    for row in rows:
        print(f"{row['fault']:44} {row['run']:10} {row['files']:>5} {row['jobs']:>5} {row['orphans running']:>16}")
    met = all(row["files"] == 1 and row["jobs"] == 1 and not row["orphans running"] for row in rows)
    print(f"target: one file and one job per run, no orphan: {'PASS' if met else 'FAIL'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
