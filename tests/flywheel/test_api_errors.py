"""One error shape for every 4xx, whatever raised it: DRF, Django, a service or the parser."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.api_clients import Tenant, assert_error

pytestmark = pytest.mark.django_db

# An endpoint, and a method it does not allow.
WRONG_METHODS = [
    ("get", "/api/outcomes"),
    ("get", "/api/outcomes/events"),
    ("post", "/api/route"),
    ("post", "/training/models"),
    ("delete", "/training/leaderboard"),
    ("put", "/training/stats"),
    ("get", "/training/deploy/7b0c7a5e-0000-4000-8000-000000000000"),
    ("get", "/training/promote-winner"),
    ("get", "/training/run"),
    ("post", "/training/runs/7b0c7a5e-0000-4000-8000-000000000000"),
    ("post", "/training/status/ftjob-1"),
]
JSON_POSTS = ["/api/outcomes", "/api/outcomes/events", "/training/run", "/training/promote-winner"]


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
def test_a_method_an_endpoint_does_not_allow_answers_405(tenant: Tenant, method: str, path: str) -> None:
    assert_error(getattr(tenant.ops, method)(path), 405, "method_not_allowed")


@pytest.mark.parametrize("path", JSON_POSTS)
def test_malformed_json_answers_400_everywhere(tenant: Tenant, path: str) -> None:
    assert_error(tenant.ops.post(path, b"{nope", content_type="application/json"), 400, "parse_error")


@pytest.mark.parametrize("path", JSON_POSTS)
def test_nan_is_not_json(tenant: Tenant, path: str) -> None:
    assert_error(tenant.ops.post(path, b'{"min_quality_score": NaN}', content_type="application/json"), 400)


@pytest.mark.parametrize("path", JSON_POSTS)
def test_a_body_that_is_not_json_answers_415(tenant: Tenant, path: str) -> None:
    assert_error(tenant.ops.post(path, "a=b", content_type="application/x-www-form-urlencoded"), 415)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/training/models", {"organization_id": "nope"}),
        ("/training/leaderboard", {"min_samples": -1}),
        ("/training/leaderboard", {"min_samples": "many"}),
        ("/training/stats", {"min_quality_score": "inf"}),
        ("/api/route", {"organization_id": "nope"}),
    ],
)
def test_bad_query_parameters_answer_400_naming_the_parameter(tenant: Tenant, path: str, query: dict[str, Any]) -> None:
    error = assert_error(tenant.ops.get(path, query), 400, "invalid")
    assert set(error["details"]) == set(query)


def test_an_unauthenticated_request_gets_the_shape_too() -> None:
    assert_error(APIClient().get("/training/models"), 401, "not_authenticated")


def test_the_schema_and_its_ui_are_served(tenant: Tenant) -> None:
    schema = tenant.agent.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/route" in schema.json()["paths"]
    assert tenant.agent.get("/api/docs/").status_code == 200
