"""GPU workers on a django-q2 cluster of their own: what a worker started by name reads.

Each case starts a fresh Python, as ``Q_CLUSTER_NAME=<name> manage.py qcluster`` would, and
prints django-q2's configuration as that worker sees it.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOW = (
    "import django; django.setup(); from django_q.conf import Conf; "
    "print(Conf.CLUSTER_NAME, Conf.WORKERS, Conf.TIMEOUT, Conf.RETRY)"
)


def worker_conf(**environment: str) -> list[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "flywheel.settings", **environment}
    for name in ("Q_WORKERS", "Q_TIMEOUT", "Q_RETRY"):
        env.pop(name, None)
    result = subprocess.run(  # noqa: S603 - this interpreter and a fixed snippet
        [sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def test_a_worker_named_after_the_open_weights_cluster_takes_its_long_timeout_and_one_worker() -> None:
    conf = worker_conf(Q_CLUSTER_NAME="gpu", OPENWEIGHTS_Q_CLUSTER="gpu", OPENWEIGHTS_Q_TIMEOUT="7200")
    assert conf == ["gpu", "1", "7200", "7800"]


def test_a_worker_named_after_a_cluster_without_settings_starts_with_the_normal_ones() -> None:
    assert worker_conf(Q_CLUSTER_NAME="reports") == ["reports", "2", "600", "720"]
