"""Production settings refuse to start without what they need and pass Django's deploy checks."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"}}
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


def test_the_project_refuses_to_start_without_a_secret_key_when_debug_is_off() -> None:
    result = manage("check", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_check_deploy_reports_nothing_with_the_documented_production_variables() -> None:
    result = manage(
        "check",
        "--deploy",
        DEBUG="false",
        SECRET_KEY="x" * 60 + "-production-secret",
        ALLOWED_HOSTS="flywheel.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_documented_redis_broker_and_cache_load_their_client_library() -> None:
    script = (
        "from django.core.cache import caches; from django_q.brokers import get_broker; "
        "print(type(get_broker()).__name__, type(caches['default']).__name__)"
    )
    result = manage(
        "shell", "-v", "0", "-c", script, REDIS_URL="redis://127.0.0.1:9/0", CACHE_URL="redis://127.0.0.1:9/1"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Redis", "RedisCache"]


def test_the_api_documentation_is_public_in_development_and_closed_in_production() -> None:
    script = "from django.conf import settings; print(settings.API_DOCS_PUBLIC)"
    production = {"DEBUG": "false", "SECRET_KEY": "x" * 60, "ALLOWED_HOSTS": "flywheel.example.com"}
    assert manage("shell", "-v", "0", "-c", script, DEBUG="true").stdout.split() == ["True"]
    assert manage("shell", "-v", "0", "-c", script, **production).stdout.split() == ["False"]
    opened = manage("shell", "-v", "0", "-c", script, **production, API_DOCS_PUBLIC="true")
    assert opened.stdout.split() == ["True"]
