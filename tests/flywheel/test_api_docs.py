"""/api/schema/, /api/docs/, /api/redoc/: open while API_DOCS_PUBLIC is on, else for API keys and staff only."""

import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from rest_framework.test import APIClient

from tests.api_clients import Tenant, assert_error, staff_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PAGES = ["/api/schema/", "/api/docs/", "/api/redoc/"]


@pytest.mark.parametrize("path", PAGES)
def test_public_documentation_is_open_to_anyone(settings: Any, path: str) -> None:
    settings.API_DOCS_PUBLIC = True
    assert APIClient().get(path).status_code == 200


@pytest.mark.parametrize(("path", "accept"), [("/api/schema/", "*/*"), ("/api/docs/", "text/html")])
def test_closed_documentation_refuses_anonymous_readers_with_401_in_the_error_shape(
    settings: Any, path: str, accept: str
) -> None:
    settings.API_DOCS_PUBLIC = False
    response = APIClient().get(path, HTTP_ACCEPT=accept)  # YAML and HTML pages; the refusal is JSON
    error = assert_error(response, 401, "not_authenticated")
    assert "staff session" in error["message"]
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.parametrize("path", PAGES)
def test_closed_documentation_is_open_to_any_api_key(settings: Any, tenant: Tenant, path: str) -> None:
    settings.API_DOCS_PUBLIC = False
    assert tenant.agent.get(path).status_code == 200


@pytest.mark.parametrize("path", PAGES)
def test_closed_documentation_is_open_to_a_staff_session_without_permissions(settings: Any, path: str) -> None:
    settings.API_DOCS_PUBLIC = False
    assert staff_client().get(path).status_code == 200


@pytest.mark.parametrize("path", PAGES)
def test_closed_documentation_refuses_a_session_that_is_not_staff(settings: Any, path: str) -> None:
    settings.API_DOCS_PUBLIC = False
    client = APIClient()
    client.force_login(UserFactory.create(is_staff=False))
    assert_error(client.get(path), 403, "permission_denied")


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_documentation_pages_load_their_scripts_from_flywheel_itself(settings: Any, path: str) -> None:
    settings.API_DOCS_PUBLIC = True
    page = APIClient().get(path).content.decode()
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/static/") for source in sources)
    for source in sources:  # each asset is really there, served by Flywheel (WhiteNoise or staticfiles)
        assert finders.find(source.split("/static/", 1)[1]), source
