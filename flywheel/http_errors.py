"""JSON answers for errors that happen outside a DRF view: every API error has the one shape.

DRF's exception handler covers what its views raise. This middleware covers the rest on API paths
(everything but the admin and static files): NUL bytes in the URL, a body declared larger than
the limit (refused before it is read), the database being unreachable (503 with ``Retry-After``),
and any unexpected exception (a 500 in the error shape, logged). The 404/500 handlers do the same
for URLs that match no view.
"""

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from flywheel.errors import error_body

logger = logging.getLogger(__name__)

NOT_API = ("/admin/", "/static/")
RETRY_AFTER_SECONDS = 30


def is_api(request: HttpRequest) -> bool:
    return not request.path.startswith(NOT_API)


def error_response(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status)


def too_large() -> JsonResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    message = f"The request body is larger than the limit of {limit} bytes; send smaller batches."
    return error_response(413, "request_too_large", message, {"max_bytes": limit})


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class APIErrorMiddleware:
    """Refuse what cannot be served before a view runs, and answer unexpected errors in JSON."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api(request):
            refused = self.refuse(request)
            if refused is not None:
                return refused
        return self.get_response(request)

    def refuse(self, request: HttpRequest) -> HttpResponse | None:
        if "\x00" in request.path or "\x00" in unquote(request.META.get("QUERY_STRING", "")):
            return error_response(400, "invalid", "The URL contains a NUL byte, which no value may hold.")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and _declared_length(request) > limit:
            return too_large()
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api(request):
            return None
        if isinstance(exception, RequestDataTooBig):
            return too_large()
        if isinstance(exception, OperationalError | InterfaceError):
            logger.warning("Database unavailable for %s %s: %s", request.method, request.path, exception)
            response = error_response(503, "unavailable", "The service is briefly unavailable; try again shortly.")
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        logger.exception("Unexpected error for %s %s", request.method, request.path)
        return error_response(500, "server_error", "An unexpected error occurred; it has been logged.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: JSON on API paths, Django's page in the admin."""
    if is_api(request):
        return error_response(404, "not_found", f"Nothing is at {request.path}.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Exception())


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: JSON on API paths, Django's page in the admin."""
    if is_api(request):
        return error_response(500, "server_error", "An unexpected error occurred; it has been logged.")
    from django.views.defaults import server_error as django_server_error

    return django_server_error(request)
