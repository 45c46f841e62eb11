"""The HTTP side of the fake OpenAI API: routes, request parsing, answers, faults and list pages.

:mod:`tests.training.fake_openai` keeps the state and answers each route; this module turns bytes
on the wire into a :class:`RecordedRequest` and an answer back into bytes, as OpenAI's API does.
"""

import json
import re
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

Answer = tuple[int, dict[str, Any]]

DEFAULT_MODELS = ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14")
JOB_STEPS = {"validating_files": "queued", "queued": "running", "running": "succeeded"}
TERMINAL = {"succeeded", "failed", "cancelled"}
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/v1/files"), "files.create"),
    ("GET", re.compile(r"/v1/files"), "files.list"),
    ("GET", re.compile(r"/v1/files/(?P<id>[^/]+)"), "files.retrieve"),
    ("DELETE", re.compile(r"/v1/files/(?P<id>[^/]+)"), "files.delete"),
    ("POST", re.compile(r"/v1/fine_tuning/jobs"), "jobs.create"),
    ("GET", re.compile(r"/v1/fine_tuning/jobs"), "jobs.list"),
    ("GET", re.compile(r"/v1/fine_tuning/jobs/(?P<id>[^/]+)"), "jobs.retrieve"),
    ("POST", re.compile(r"/v1/fine_tuning/jobs/(?P<id>[^/]+)/cancel"), "jobs.cancel"),
    ("GET", re.compile(r"/v1/fine_tuning/jobs/(?P<id>[^/]+)/events"), "jobs.events"),
    ("GET", re.compile(r"/v1/fine_tuning/jobs/(?P<id>[^/]+)/checkpoints"), "jobs.checkpoints"),
    ("GET", re.compile(r"/v1/models/(?P<id>.+)"), "models.retrieve"),
    ("POST", re.compile(r"/v1/chat/completions"), "chat.completions"),
]


@dataclass
class RecordedRequest:
    """One request as the fake received it; ``body`` is parsed JSON or the multipart fields."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes


@dataclass
class Fault:
    """A canned answer for the next call of a route: wait ``delay`` seconds, then answer ``status``.

    With ``after``, the call is carried out first (a file or job is created), and only its answer
    is delayed or replaced: the faults after which a blind retry makes a duplicate.
    """

    status: int | None = None
    message: str = ""
    delay: float = 0.0
    after: bool = False


@dataclass
class JobFailure:
    message: str
    code: str = "training_failed"


class Serving(Protocol):
    def serve(self, handler: BaseHTTPRequestHandler) -> None: ...


def api_error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> Answer:
    """Return an answer in OpenAI's error shape."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


def parse_multipart(raw: bytes, content_type: str) -> dict[str, Any]:
    """Split a multipart/form-data body byte-exactly: text fields as str, files as dicts."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        return {}
    fields: dict[str, Any] = {}
    for part in raw.split(b"--" + match.group(1).encode())[1:-1]:
        head, _, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        value = value.removesuffix(b"\r\n")
        name = re.search(rb'(?:^|;)\s*name="([^"]*)"', head, re.MULTILINE | re.IGNORECASE)
        filename = re.search(rb'filename="([^"]*)"', head, re.IGNORECASE)
        if name is None:
            continue
        key = name.group(1).decode()
        if filename is None:
            fields[key] = value.decode()
        else:
            fields[key] = {"filename": filename.group(1).decode(), "content": value}
    return fields


def dataset_problem(content: bytes, method_type: str) -> str | None:
    """Return the first problem of a JSONL dataset for the method, or None when it trains."""
    lines = [line for line in content.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return "The training file is empty."
    for number, line in enumerate(lines, start=1):
        try:
            example = json.loads(line)
        except json.JSONDecodeError:
            return f"Line {number} of the training file is not valid JSON."
        if not isinstance(example, dict):
            return f"Line {number} of the training file is not a JSON object."
        if method_type == "supervised" and not isinstance(example.get("messages"), list):
            return f"Line {number} of the training file has no 'messages'."
        if method_type == "dpo":
            missing = [k for k in ("input", "preferred_output", "non_preferred_output") if k not in example]
            if missing:
                return f"Line {number} of the training file lacks {', '.join(missing)}."
    return None


def receive(handler: BaseHTTPRequestHandler) -> tuple[RecordedRequest, dict[str, str]]:
    """Read one request: its route (``unknown`` when none matches), path parameters and body."""
    raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    url = urlsplit(handler.path)
    path = unquote(url.path)
    route, params = "unknown", {}
    for method, pattern, name in ROUTES:
        match = pattern.fullmatch(path)
        if match and method == handler.command:
            route, params = name, match.groupdict()
            break
    content_type = handler.headers.get("Content-Type", "")
    body: Any = raw
    if content_type.startswith("multipart/form-data"):
        body = parse_multipart(raw, content_type)
    elif raw:
        body = json.loads(raw)
    headers = {key.lower(): value for key, value in handler.headers.items()}
    query = dict(parse_qsl(url.query))
    return RecordedRequest(route, handler.command, path, query, headers, body, raw), params


def send(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], *, request_id: str) -> None:
    """Write one JSON answer; 429 and 5xx carry ``retry-after-ms: 1`` so client backoff costs a millisecond."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("x-request-id", request_id)
    if status == 429 or status >= 500:
        handler.send_header("retry-after-ms", "1")
    handler.end_headers()
    handler.wfile.write(data)
    handler.wfile.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "Server"

    def do_GET(self) -> None:
        self.server.fake.serve(self)

    do_POST = do_GET
    do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: Serving) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.fake = fake


def public(record: dict[str, Any], *, hide: tuple[str, ...]) -> dict[str, Any]:
    """Return a stored record without the fake's private keys."""
    return {key: value for key, value in record.items() if key not in hide}


def page(items: list[dict[str, Any]], query: dict[str, str], *, default_limit: int = 20) -> dict[str, Any]:
    """Return one cursor page (``after`` an id, at most ``limit`` items) in OpenAI's list shape."""
    start = 0
    if "after" in query:
        start = next((i + 1 for i, item in enumerate(items) if item["id"] == query["after"]), len(items))
    limit = int(query.get("limit") or default_limit)
    chunk = items[start : start + limit]
    return {"object": "list", "data": chunk, "has_more": start + limit < len(items)}


def metadata_filter(query: dict[str, str]) -> dict[str, str]:
    """The ``metadata[key]=value`` pairs of a list query, as OpenAI's jobs list reads them."""
    pairs = ((re.fullmatch(r"metadata\[(.+)\]", key), value) for key, value in query.items())
    return {match.group(1): value for match, value in pairs if match}
