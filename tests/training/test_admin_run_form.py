"""The "Run training cycle now" form: it starts on the person's organization and checks everything before confirming.

A version that is malformed or taken, a pool with a run still active or too few eligible
examples are refused on the review, so "Yes, start training" is offered only for a run that starts.
"""

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from flywheel.models import Organization
from tests.factories import OrganizationFactory, UserFactory
from tests.training.factories import TrainingRunFactory
from tests.training.helpers import make_labels
from training.models import TrainingRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("run_settings")]

RUN_NOW = "admin:training_trainingrun_run_now"
CONFIRM = "Yes, start training"


@pytest.fixture
def operator(client: Client) -> Client:
    user = UserFactory.create(is_staff=True, username="operator")
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_trainingrun", "run_training"]))
    client.force_login(user)
    return client


@pytest.fixture
def acme() -> Organization:
    organization = OrganizationFactory.create(name="Acme", slug="acme")
    make_labels(organization)
    return organization


def review(client: Client, organization: Organization | None, **values: Any) -> str:
    data = {"organization": str(organization.pk) if organization else "", "min_quality_score": 0.6, "method": "sft"}
    response = client.post(reverse(RUN_NOW), {**data, "validation_percent": 0, "ab_test_percentage": 10, **values})
    assert response.status_code == 200
    return response.content.decode()


def selected_pool(page: str) -> str:
    """The value of the organization option selected on the form ("" is the global model)."""
    select = re.search(r'<select name="organization"[^>]*>(.*?)</select>', page, re.S)
    assert select is not None
    chosen = re.search(r'<option value="([^"]*)"[^>]*selected', select.group(1))
    return chosen.group(1) if chosen else ""


def test_the_form_starts_on_the_first_organization_not_the_global_model(operator: Client, acme: Organization) -> None:
    OrganizationFactory.create(name="Zeta", slug="zeta")
    page = operator.get(reverse(RUN_NOW)).content.decode()
    assert selected_pool(page) == str(acme.pk)


def test_the_form_starts_on_the_organization_the_person_last_trained(operator: Client, acme: Organization) -> None:
    zeta = OrganizationFactory.create(name="Zeta", slug="zeta")
    user = operator.get(reverse(RUN_NOW)).wsgi_request.user
    TrainingRunFactory.create(organization=zeta, status=TrainingRun.Status.SUCCEEDED, actor_user=user)
    assert selected_pool(operator.get(reverse(RUN_NOW)).content.decode()) == str(zeta.pk)
    chosen = operator.get(reverse(RUN_NOW), {"organization": str(acme.pk)})
    assert selected_pool(chosen.content.decode()) == str(acme.pk)


@pytest.mark.parametrize(
    ("version", "message"),
    [("2.5", "&#x27;2.5&#x27; is not a version like v2.5.0."), ("v2.0.0", "v2.0.0 is already taken in this pool.")],
)
def test_a_bad_version_is_refused_on_the_review(
    operator: Client, acme: Organization, version: str, message: str
) -> None:
    TrainingRunFactory.create(organization=acme, status=TrainingRun.Status.SUCCEEDED, model_version="v2.0.0")
    page = review(operator, acme, model_version=version)
    assert message in page and CONFIRM not in page


def test_a_pool_with_an_active_run_is_refused_on_the_review(operator: Client, acme: Organization) -> None:
    TrainingRunFactory.create(organization=acme, status=TrainingRun.Status.TRAINING)
    page = review(operator, acme)
    assert "A training run is already training for this pool" in page and CONFIRM not in page


def test_too_few_eligible_examples_are_refused_on_the_review(operator: Client, acme: Organization) -> None:
    page = review(operator, acme, min_quality_score=0.99)
    assert "Only 0 eligible examples at quality &gt;= 0.99; a run needs at least 10" in page and CONFIRM not in page
    assert not TrainingRun.objects.exists()


def test_a_valid_review_offers_to_start_and_force_reaches_the_run(operator: Client, acme: Organization) -> None:
    page = review(operator, acme, model_version="v3.0.0", force="on")
    assert CONFIRM in page and "Forced: trains even if the data has not changed" in page
    data = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    response = operator.post(reverse(RUN_NOW), {**dict(data), "confirm": "1"})
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert (run.organization, run.model_version, run.force, run.triggered_by) == (acme, "v3.0.0", True, "admin")
