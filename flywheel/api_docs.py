"""The OpenAPI schema, Swagger UI and ReDoc, open to anyone or behind a login as ``API_DOCS_PUBLIC`` says.

A refusal answers in the API's one error shape (JSON), whatever format the page itself has.
"""

from typing import Any

from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from flywheel.auth import ApiDocsAccess


class JSONErrors:
    """Render an error answer as JSON even when the page is YAML or HTML."""

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        if getattr(response, "exception", False):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]


class SchemaView(JSONErrors, SpectacularAPIView):
    """``GET /api/schema/``: the OpenAPI document."""

    permission_classes = [ApiDocsAccess]


class SwaggerView(JSONErrors, SpectacularSwaggerView):
    """``GET /api/docs/``: Swagger UI over the schema."""

    permission_classes = [ApiDocsAccess]


class RedocView(JSONErrors, SpectacularRedocView):
    """``GET /api/redoc/``: ReDoc over the schema, without the stock page's web fonts (offline)."""

    permission_classes = [ApiDocsAccess]
    template_name = "api_docs/redoc.html"
