"""The authorization matrix: a staff session needs, on every endpoint, the Django permission the admin asks.

For each endpoint, a staff user without its permission gets 403 and changes nothing, in any
organization; with exactly that permission, or as a superuser, the normal answer; an ops key's
answer is what it always was. Every API view declares what staff need, method by method.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from experiments.models import Experiment
from flywheel.auth import IsOrganizationMember
from flywheel.models import Organization
from outcomes.models import OutcomeLabel
from registry.models import RegisteredModel
from registry.services import model_deploy
from tests.api_clients import ML_OPS_PERMISSIONS, Tenant, assert_error, staff_client
from tests.experiments.experiment_data import start
from tests.factories import UserFactory
from tests.outcomes.factories import OutcomeLabelFactory
from tests.registry.factories import RegisteredModelFactory
from tests.training.factories import TrainingRunFactory
from tests.training.helpers import drive_to, make_labels
from training.models import TrainingRun
from training.services import training_run_start

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Call:
    """One request: a method, a path (with its query) and a JSON body."""

    method: str
    path: str
    body: Any = None

    def send(self, client: APIClient) -> Any:
        return getattr(client, self.method.lower())(self.path, self.body, format="json")


@dataclass(frozen=True)
class Endpoint:
    """An endpoint of the matrix: its route, the staff permissions it needs and its normal answer."""

    method: str
    url_name: str
    permissions: tuple[str, ...]
    status: int
    prepare: Callable[[Organization], Call]  # makes what the call needs in the organization


def deployed_model(organization: Organization) -> RegisteredModel:
    return model_deploy(model=RegisteredModelFactory.create(organization=organization))


def job_run(organization: Organization) -> TrainingRun:
    """A run of ``organization`` whose job is training at the provider."""
    make_labels(organization, positives=60)
    run = training_run_start(organization=organization, triggered_by=TrainingRun.Trigger.COMMAND, actor=None)
    return drive_to(run, TrainingRun.Status.TRAINING)


def progress_of_a_test(organization: Organization) -> Call:
    deployed_model(organization)
    return Call("GET", f"/api/experiments/{start(RegisteredModelFactory.create(organization=organization), look=1).pk}")


def undecided_test(organization: Organization) -> Call:
    deployed_model(organization)
    start(RegisteredModelFactory.create(organization=organization), look=1)
    return Call("POST", "/training/promote-winner", {"organization_id": str(organization.pk)})


def events(organization: Organization) -> Call:
    OutcomeLabelFactory.create(organization=organization, external_id="msg-1")
    deal = {"external_id": "msg-1", "type": "deal_closed", "deal_value": 25000}
    return Call("POST", f"/api/outcomes/events?organization_id={organization.pk}", [deal])


def scoped(method: str, path: str) -> Callable[[Organization], Call]:
    """A call that names the organization in its query (a staff session must; a key may)."""

    def prepare(organization: Organization) -> Call:
        deployed_model(organization)
        return Call(method, f"{path}?organization_id={organization.pk}&lead=lead-1&min_samples=0")

    return prepare


VIEW_MODELS = ("registry.view_registeredmodel",)
ENDPOINTS = {
    "POST /api/outcomes": Endpoint(
        "POST",
        "outcomes-upsert",
        ("outcomes.add_outcomelabel", "outcomes.change_outcomelabel"),
        200,
        lambda org: Call("POST", f"/api/outcomes?organization_id={org.pk}", {"external_id": "planted", "body": "b"}),
    ),
    "POST /api/outcomes/events": Endpoint("POST", "outcomes-events", ("outcomes.change_outcomelabel",), 200, events),
    "GET /api/route": Endpoint("GET", "route", VIEW_MODELS, 200, scoped("GET", "/api/route")),
    "GET /training/models": Endpoint("GET", "training-models", VIEW_MODELS, 200, scoped("GET", "/training/models")),
    "GET /training/leaderboard": Endpoint(
        "GET", "training-leaderboard", VIEW_MODELS, 200, scoped("GET", "/training/leaderboard")
    ),
    "GET /training/stats": Endpoint(
        "GET", "training-stats", ("outcomes.view_outcomelabel",), 200, scoped("GET", "/training/stats")
    ),
    "POST /training/run": Endpoint(
        "POST",
        "training-run-start",
        ("training.run_training",),
        202,
        lambda org: Call("POST", "/training/run", {"organization_id": str(org.pk)}),
    ),
    "GET /training/runs/{id}": Endpoint(
        "GET",
        "training-run",
        ("training.view_trainingrun",),
        200,
        lambda org: Call("GET", f"/training/runs/{TrainingRunFactory.create(organization=org).pk}"),
    ),
    "GET /training/status/{job_id}": Endpoint(
        "GET",
        "training-job-status",
        ("training.view_trainingrun",),
        200,
        lambda org: Call("GET", f"/training/status/{job_run(org).provider_job_id}"),
    ),
    "POST /training/deploy/{id}": Endpoint(
        "POST",
        "training-deploy",
        ("registry.deploy_model",),
        200,
        lambda org: Call("POST", f"/training/deploy/{RegisteredModelFactory.create(organization=org).pk}", {}),
    ),
    "POST /training/promote-winner": Endpoint(
        "POST", "training-promote-winner", ("registry.deploy_model",), 200, undecided_test
    ),
    "GET /api/experiments": Endpoint(
        "GET", "experiments-list", ("experiments.view_experiment",), 200, scoped("GET", "/api/experiments")
    ),
    "GET /api/experiments/{id}": Endpoint(
        "GET", "experiments-detail", ("experiments.view_experiment",), 200, progress_of_a_test
    ),
}


def world() -> list[Any]:
    """Every row an endpoint could write, to show that a refused request changed nothing."""
    return [
        list(OutcomeLabel.objects.order_by("pk").values()),
        list(RegisteredModel.objects.order_by("pk").values()),
        list(TrainingRun.objects.order_by("pk").values()),
        list(Experiment.objects.order_by("pk").values()),
    ]


def superuser_client() -> APIClient:
    client = APIClient()
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    return client


# --- The matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_a_staff_session_without_permissions_is_refused_and_changes_nothing(other: Tenant, name: str) -> None:
    call = ENDPOINTS[name].prepare(other.organization)
    before = world()
    error = assert_error(call.send(staff_client()), 403, "permission_denied")
    assert ENDPOINTS[name].permissions[0] in error["message"]
    assert world() == before


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_every_other_endpoints_permission_does_not_open_this_one(other: Tenant, name: str) -> None:
    endpoint = ENDPOINTS[name]
    others = [permission for permission in ML_OPS_PERMISSIONS if permission not in endpoint.permissions]
    call = endpoint.prepare(other.organization)
    before = world()
    assert_error(call.send(staff_client(*others)), 403, "permission_denied")
    assert world() == before


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_a_staff_session_with_exactly_the_permission_gets_the_normal_answer(other: Tenant, name: str) -> None:
    endpoint = ENDPOINTS[name]
    response = endpoint.prepare(other.organization).send(staff_client(*endpoint.permissions))
    assert response.status_code == endpoint.status, response.content[:500]


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_a_superuser_holds_every_permission(other: Tenant, name: str) -> None:
    endpoint = ENDPOINTS[name]
    response = endpoint.prepare(other.organization).send(superuser_client())
    assert response.status_code == endpoint.status, response.content[:500]


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_an_ops_key_is_unaffected(tenant: Tenant, name: str) -> None:
    endpoint = ENDPOINTS[name]
    response = endpoint.prepare(tenant.organization).send(tenant.ops)
    assert response.status_code == endpoint.status, response.content[:500]


def test_a_planted_deal_in_another_organization_is_refused_without_the_permission(other: Tenant) -> None:
    call = events(other.organization)
    assert_error(call.send(staff_client("registry.view_registeredmodel", "outcomes.view_outcomelabel")), 403)
    assert OutcomeLabel.objects.get(external_id="msg-1").deal_closed_at is None


# --- Every view declares what staff need -----------------------------------------------------------

DOCS_VIEWS = (SpectacularAPIView, SpectacularSwaggerView, SpectacularRedocView)  # the docs: their own rule
METHODS = ("get", "post", "put", "patch", "delete")


def api_views(patterns: list[Any] | None = None) -> dict[str, type[APIView]]:
    """Every DRF view of the URLconf, by route name."""
    found: dict[str, type[APIView]] = {}
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            found.update(api_views(pattern.url_patterns))
        elif isinstance(pattern, URLPattern):
            view = getattr(pattern.callback, "cls", None)
            if isinstance(view, type) and issubclass(view, APIView) and not issubclass(view, DOCS_VIEWS):
                found[str(pattern.name)] = view
    return found


def routed_endpoints() -> set[tuple[str, str]]:
    return {(method.upper(), name) for name, view in api_views().items() for method in METHODS if hasattr(view, method)}


def test_the_matrix_covers_every_endpoint_of_the_api() -> None:
    assert routed_endpoints() == {(e.method, e.url_name) for e in ENDPOINTS.values()}


def test_every_api_view_declares_the_staff_permissions_of_each_of_its_methods() -> None:
    for name, view in api_views().items():
        declared = getattr(view, "staff_permissions", None)
        methods = {method.upper() for method in METHODS if hasattr(view, method)}
        assert declared is not None and set(declared) == methods, f"{name}: {declared} for {methods}"
        assert not hasattr(view, "staff_permission"), f"{name} still names a single staff_permission"


def test_the_matrix_asks_what_each_view_declares() -> None:
    views = api_views()
    for endpoint in ENDPOINTS.values():
        declared = views[endpoint.url_name].staff_permissions  # type: ignore[attr-defined]
        assert set(declared[endpoint.method]) == set(endpoint.permissions), endpoint.url_name


def test_every_declared_permission_exists() -> None:
    named = {p for view in api_views().values() for ps in view.staff_permissions.values() for p in ps}  # type: ignore[attr-defined]
    existing = {
        f"{app}.{codename}" for app, codename in Permission.objects.values_list("content_type__app_label", "codename")
    }
    assert named <= existing, named - existing
    assert set(ML_OPS_PERMISSIONS) == named


# --- Methods and views without a declaration -------------------------------------------------------


def test_head_asks_what_get_asks() -> None:
    assert staff_client().head("/training/models").status_code == 403
    assert staff_client(*VIEW_MODELS).head("/training/models").status_code == 200


def test_options_is_open_to_whoever_may_use_the_endpoint() -> None:
    assert_error(staff_client().options("/training/models"), 403, "permission_denied")
    assert staff_client(*VIEW_MODELS).options("/training/models").status_code == 200


class Undeclared(APIView):
    permission_classes = [IsOrganizationMember]

    def get(self, request: Any) -> Response:
        return Response({})


def test_a_view_that_declares_nothing_is_closed_to_staff_even_superusers() -> None:
    request = APIRequestFactory().get("/undeclared")
    force_authenticate(request, user=UserFactory.create(is_staff=True, is_superuser=True))
    response = Undeclared.as_view()(request)
    assert response.status_code == 403
    assert "may not make GET requests" in str(response.data["error"]["message"])
