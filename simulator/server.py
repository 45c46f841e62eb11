"""Flywheel's WSGI application on a loopback port in this process, for ``--http local``.

The server thread shares the process's travelled clock, so the API answers in simulated time
exactly as the services do. An external URL is used as given: that server reads its own clock,
so its maturation and experiment looks follow real time, not the simulation's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.core.wsgi import get_wsgi_application
from django.db import connections

LOCAL = "local"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def local_server(http: str) -> Iterator[str]:
    """Yield the base URL to call: ``http`` itself, or an in-process server's for ``"local"``."""
    if http != LOCAL:
        yield http
        return
    server: WSGIServer = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=_QuietHandler)
    thread = threading.Thread(target=_serve, args=(server,), name="simulator-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def _serve(server: WSGIServer) -> None:
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        connections.close_all()
