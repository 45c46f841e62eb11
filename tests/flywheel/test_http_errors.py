"""API errors raised outside a view still answer in the one JSON error shape."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.api_clients import assert_error, make_tenant

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", ["/training/status/%00", "/training/runs/%00", "/api/route?lead_key=a%00b"])
def test_a_nul_byte_in_the_url_answers_400(path: str) -> None:
    tenant = make_tenant()
    assert_error(tenant.ops.get(path), 400, "invalid")


def test_a_body_declared_larger_than_the_limit_is_refused_before_it_is_read(settings: object) -> None:
    tenant = make_tenant()
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # type: ignore[attr-defined]
    answer = tenant.ops.post("/api/outcomes", b"{}", content_type="application/json", CONTENT_LENGTH=str(limit + 1))
    assert_error(answer, 413, "request_too_large")


def test_an_oversized_webhook_body_answers_413_in_json() -> None:
    body = b"x" * (6 * 1024 * 1024)
    assert_error(Client().post("/training/webhooks/openai", body, content_type="application/json"), 413)


def test_an_unknown_api_url_answers_404_in_json() -> None:
    assert_error(Client().get("/api/no-such-thing"), 404, "not_found")


def test_the_admin_keeps_its_own_error_pages() -> None:
    answer = Client().get("/admin/no-such-page/")
    assert answer.status_code in (302, 404)
    assert answer["Content-Type"].startswith("text/html")


def test_an_unreachable_database_answers_503_with_retry_after() -> None:
    script = (
        "from django.test import Client; import json; "
        "answer = Client().get('/api/route?lead_key=x', HTTP_AUTHORIZATION='Api-Key abc.def'); "
        "print(json.dumps([answer.status_code, answer.get('Retry-After'), answer.json()]))"
    )
    env = {**os.environ, "DATABASE_URL": "postgres://flywheel@127.0.0.1:9/flywheel", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    status, retry_after, body = json.loads(result.stdout.strip().splitlines()[-1])
    assert (status, retry_after) == (503, "30")
    assert body["error"]["code"] == "unavailable"


@pytest.mark.parametrize(
    "body",
    [
        b'{"external_id": "m-1", "body": "hi\\u0000there"}',
        b'{"external_id": "m-1", "body": "hi", "extra": {"k\\u0000": 1}}',
        b'[{"external_id": "a\\u0000", "type": "opened"}]',
    ],
)
def test_a_nul_character_anywhere_in_a_json_body_answers_400(body: bytes) -> None:
    tenant = make_tenant()
    path = "/api/outcomes/events" if body.startswith(b"[") else "/api/outcomes"
    assert_error(tenant.agent.post(path, body, content_type="application/json"), 400, "parse_error")


def test_an_escaped_backslash_before_u0000_is_ordinary_text() -> None:
    tenant = make_tenant()
    body = b'{"external_id": "m-1", "body": "a literal \\\\u0000 in text"}'
    assert tenant.agent.post("/api/outcomes", body, content_type="application/json").status_code in (200, 201)
