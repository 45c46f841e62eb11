"""The project's domain errors and the one API exception handler that turns them into 4xx answers.

Every 4xx answer has the same shape, ``{"error": {"code", "message", "details"}}``; the schema
of that answer (:func:`error_responses`) lives here too, so that the promise is kept in one place.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response


class ApplicationError(Exception):
    """A domain error with a message meant for the person or agent who caused it."""

    code: str = "invalid"
    status_code: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}
        if code:
            self.code = code


class NotFound(ApplicationError):
    code = "not_found"
    status_code = status.HTTP_404_NOT_FOUND


class Conflict(ApplicationError):
    code = "conflict"
    status_code = status.HTTP_409_CONFLICT


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def validation_details(error: DjangoValidationError) -> Any:
    if hasattr(error, "error_dict"):
        return error.message_dict
    return {"non_field_errors": error.messages}


def too_large_response() -> Response:
    """413 for a body above ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    message = f"The request body is larger than the limit of {limit} bytes; send smaller batches."
    return Response(
        error_body("request_too_large", message, {"max_bytes": limit}),
        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map domain, Django and DRF errors to the project's single error shape."""
    # Imported here: rest_framework.views loads the authentication classes from the settings,
    # and flywheel.auth imports this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        details = validation_details(exc)
        return Response(error_body("invalid", "The request is not valid.", details), status=400)
    if isinstance(exc, RequestDataTooBig):
        return too_large_response()
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else "invalid"
    detail = exc.detail
    if isinstance(detail, (dict, list)):
        response.data = error_body(code, "The request is not valid.", detail)
    else:
        response.data = error_body(code, str(detail))
    return response


# --- The error answer in the OpenAPI schema ------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A stable, machine-readable code, e.g. not_found.")
    message = serializers.CharField(help_text="What went wrong, for the person or agent who caused it.")
    details = serializers.JSONField(help_text="Field errors or other specifics; {} when there are none.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "The request is not valid (the details name the fields).",
    401: "No credentials, or an unknown, revoked or expired API key.",
    403: "The credentials may not do this (an agent key on an ops endpoint, staff without the permission).",
    404: "No such object for this organization (another organization's ids answer the same).",
    409: "The change conflicts with the current state.",
    413: "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE.",
    415: "The body is not JSON.",
    429: "Too many requests for this API key; retry after the Retry-After seconds.",
    502: "The fine-tuning provider or the serving server could not answer; retry later.",
    503: "The serving server is not configured or cannot be reached; nothing changed, retry later.",
}


def error_responses(*codes: int) -> dict[int, Any]:
    """Schema entries for the error answers of an endpoint: 400, 401, 403 and 429 always."""
    # Imported here: drf_spectacular.utils loads DRF's settings, which import flywheel.auth,
    # which imports this module.
    from drf_spectacular.utils import OpenApiResponse

    wanted = sorted({400, 401, 403, 429, *codes})
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in wanted}
