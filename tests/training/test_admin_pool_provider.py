"""The admin and a pool's provider: the organization page, the methods "Run training" offers, OpenAI's wind-down."""

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
JOBS_END, MODELS_SHUTDOWN = "2027-01-06", "2027-01-14"


def staff_client(client: Client, *permissions: str) -> Client:
    user = UserFactory.create(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    client.force_login(user)
    return client


@pytest.fixture
def on_openai() -> Organization:
    return OrganizationFactory.create(name="Old Co", slug="old-co", training_provider="openai")


@pytest.fixture
def on_openweights() -> Organization:
    return OrganizationFactory.create(name="New Co", slug="new-co", training_provider="openweights")


def run_now_page(client: Client, organization: Organization) -> str:
    response = client.get(reverse(RUN_NOW), {"organization": str(organization.pk)})
    assert response.status_code == 200
    return response.content.decode()


def form_data(organization: Organization, **values: Any) -> dict[str, Any]:
    data = {"organization": str(organization.pk), "min_quality_score": 0.6, "method": "sft"}
    return {**data, "validation_percent": 0, "ab_test_percentage": 10, **values}


# --- Run training: the methods of the pool's provider --------------------------------------------


def test_run_training_offers_only_the_methods_of_the_pools_provider(
    client: Client, on_openai: Organization, on_openweights: Organization
) -> None:
    operator = staff_client(client, "view_trainingrun", "run_training")

    openai_page = run_now_page(operator, on_openai)
    openweights_page = run_now_page(operator, on_openweights)

    assert 'value="sft"' in openai_page and 'value="dpo"' in openai_page and 'value="kto"' not in openai_page
    assert all(f'value="{method}"' in openweights_page for method in ("sft", "dpo", "kto"))
    assert "<strong>openai</strong> provider" in openai_page


def test_kto_for_an_openai_pool_is_refused_with_the_reason_and_nothing_starts(
    client: Client, on_openai: Organization
) -> None:
    operator = staff_client(client, "view_trainingrun", "run_training")

    response = operator.post(reverse(RUN_NOW), form_data(on_openai, method="kto", confirm="1"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "kto is not offered for this pool: its provider, openai, trains with sft, dpo only." in page
    assert "KTO needs a pool on openweights" in page
    assert not TrainingRun.objects.exists()


def test_kto_for_an_openweights_pool_starts_a_kto_run_there(client: Client, on_openweights: Organization) -> None:
    operator = staff_client(client, "view_trainingrun", "run_training")
    make_labels(on_openweights, positives=6, negatives=6)  # enough KTO examples, checked before confirming

    response = operator.post(reverse(RUN_NOW), form_data(on_openweights, method="kto", confirm="1"))

    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert (run.method, run.provider, run.organization) == ("kto", "openweights", on_openweights)


def test_staff_without_the_run_permission_cannot_open_or_post_run_training(
    client: Client, on_openweights: Organization
) -> None:
    viewer = staff_client(client, "view_trainingrun")
    assert viewer.get(reverse(RUN_NOW), {"organization": str(on_openweights.pk)}).status_code == 403
    assert viewer.post(reverse(RUN_NOW), form_data(on_openweights, confirm="1")).status_code == 403
    assert not TrainingRun.objects.exists()


# --- The organization page: choosing the provider ------------------------------------------------


def test_the_organization_page_offers_the_registered_providers_and_saves_the_choice(
    client: Client, on_openai: Organization
) -> None:
    editor = staff_client(client, "view_organization", "change_organization")
    url = reverse("admin:flywheel_organization_change", args=[on_openai.pk])

    page = editor.get(url).content.decode()
    for option in ('value=""', 'value="local"', 'value="openai"', 'value="openweights"'):
        assert option in page
    assert "Default: local (FINE_TUNING_PROVIDER)" in page

    data = {"name": on_openai.name, "slug": on_openai.slug, "training_provider": "openweights"}
    assert editor.post(url, data).status_code == 302
    on_openai.refresh_from_db()
    assert on_openai.training_provider == "openweights"


def test_the_organization_page_refuses_a_provider_that_is_not_registered(
    client: Client, on_openai: Organization
) -> None:
    editor = staff_client(client, "view_organization", "change_organization")
    url = reverse("admin:flywheel_organization_change", args=[on_openai.pk])

    response = editor.post(url, {"name": on_openai.name, "slug": on_openai.slug, "training_provider": "retired"})

    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    on_openai.refresh_from_db()
    assert on_openai.training_provider == "openai"


def test_staff_without_the_change_permission_cannot_change_the_provider(
    client: Client, on_openai: Organization
) -> None:
    viewer = staff_client(client, "view_organization")
    url = reverse("admin:flywheel_organization_change", args=[on_openai.pk])
    data = {"name": on_openai.name, "slug": on_openai.slug, "training_provider": "openweights"}

    assert viewer.post(url, data).status_code == 403
    on_openai.refresh_from_db()
    assert on_openai.training_provider == "openai"
    assert staff_client(Client(), "view_trainingrun").get(url).status_code == 403


# --- OpenAI's wind-down dates ----------------------------------------------------------------------


def test_an_openai_pool_shows_the_wind_down_dates_and_an_openweights_pool_does_not(
    client: Client, on_openai: Organization, on_openweights: Organization
) -> None:
    editor = staff_client(client, "view_organization", "change_organization", "view_trainingrun", "run_training")

    def organization_page(organization: Organization) -> str:
        return editor.get(reverse("admin:flywheel_organization_change", args=[organization.pk])).content.decode()

    for page in (organization_page(on_openai), run_now_page(editor, on_openai)):
        assert JOBS_END in page and MODELS_SHUTDOWN in page and "openweights" in page
    for page in (organization_page(on_openweights), run_now_page(editor, on_openweights)):
        assert JOBS_END not in page and MODELS_SHUTDOWN not in page


def test_the_organization_list_marks_openai_pools_and_defaults(
    client: Client, on_openai: Organization, settings: Any
) -> None:
    OrganizationFactory.create(name="Plain Co", slug="plain-co")
    editor = staff_client(client, "view_organization")

    page = editor.get(reverse("admin:flywheel_organization_changelist")).content.decode()

    assert page.count(JOBS_END) == 1 and page.count(MODELS_SHUTDOWN) == 1  # only Old Co is on openai
    assert "local (default)" in page


def test_the_page_of_a_run_on_openai_shows_the_wind_down_dates(client: Client) -> None:
    viewer = staff_client(client, "view_trainingrun")
    on_openai = TrainingRunFactory.create(provider="openai")
    on_local = TrainingRunFactory.create(provider="local", status=TrainingRun.Status.SUCCEEDED)

    def page(run: TrainingRun) -> str:
        return viewer.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()

    assert JOBS_END in page(on_openai) and MODELS_SHUTDOWN in page(on_openai)
    assert JOBS_END not in page(on_local)
