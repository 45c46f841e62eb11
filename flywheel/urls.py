"""URL configuration: the admin, the seed's /training endpoints and the agents' /api endpoints."""

from django.contrib import admin
from django.urls import include, path

from flywheel.api_docs import RedocView, SchemaView, SwaggerView

handler404 = "flywheel.http_errors.not_found"
handler500 = "flywheel.http_errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", RedocView.as_view(url_name="schema"), name="redoc"),
    path("", include("outcomes.urls")),
    path("", include("registry.urls")),
    path("", include("experiments.urls")),
    path("", include("training.urls")),
]
