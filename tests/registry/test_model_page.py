"""A model's admin page offers its traffic actions as buttons, through the list's confirmation page and permission."""

import pytest
from django.test import Client
from django.urls import reverse

from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services import model_start_ab_test
from tests.registry.conftest import texts
from tests.registry.factories import RegisteredModelFactory, pool_traffic

pytestmark = pytest.mark.django_db
CONFIRM_TEMPLATE = "admin/registry/registeredmodel/confirm_traffic.html"


def page_of(model: RegisteredModel) -> str:
    return reverse("admin:registry_registeredmodel_change", args=[model.pk])


def button(model: RegisteredModel, action: str) -> str:
    return reverse("admin:registry_registeredmodel_page_action", args=[model.pk, action])


def offered(client: Client, model: RegisteredModel) -> dict[str, str]:
    """The page's traffic actions: each name to its refusal ("" when its button is shown)."""
    page = client.get(page_of(model))
    assert page.status_code == 200
    return {action.name: action.refusal for action in page.context["page_actions"]}


def test_a_ready_model_offers_every_button_when_its_pool_has_a_step_to_roll_back(
    ops_client: Client, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    page = ops_client.get(page_of(candidate)).content.decode()

    assert offered(ops_client, candidate) == {"deploy_at_full_traffic": "", "start_ab_test": "", "rollback": ""}
    assert all(f'href="{button(candidate, name)}"' in page for name in ("deploy_at_full_traffic", "rollback"))
    assert 'href="#try-model"' in page


def test_a_pool_with_nothing_to_roll_back_offers_no_rollback_and_the_page_says_why(
    ops_client: Client, organization: Organization
) -> None:
    lonely = RegisteredModelFactory.create(organization=organization)

    actions = offered(ops_client, lonely)
    page = ops_client.get(page_of(lonely)).content.decode()

    assert actions["rollback"] == "There is no traffic change to roll back in this pool."
    assert f'href="{button(lonely, "rollback")}"' not in page
    assert actions["rollback"] in page
    assert actions["deploy_at_full_traffic"] == ""


def test_a_failed_model_is_offered_no_deploy_and_the_page_says_why(
    ops_client: Client, organization: Organization
) -> None:
    failed = RegisteredModelFactory.create(organization=organization, status=RegisteredModel.Status.FAILED)

    actions = offered(ops_client, failed)

    assert actions["deploy_at_full_traffic"] == f"{failed.model_version} has failed and cannot be deployed."
    assert f'href="{button(failed, "deploy_at_full_traffic")}"' not in ops_client.get(page_of(failed)).content.decode()


def test_the_deploy_button_confirms_on_the_lists_page_then_deploys_and_returns_to_the_model(
    ops_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    preview = ops_client.get(button(candidate, "deploy_at_full_traffic"))

    assert preview.status_code == 200
    assert preview.templates[0].name == CONFIRM_TEMPLATE
    assert {(e.model.model_version, e.status_after) for e in preview.context["events"]} == {
        ("v1.0.0", "archived"),
        ("v2.0.0", "deployed"),
    }
    assert pool_traffic(organization) == {"v1.0.0": 100.0}  # nothing moved yet

    done = ops_client.post(button(candidate, "deploy_at_full_traffic"), {"confirm_step": "1", "apply": "yes"})

    assert (done.status_code, done["Location"]) == (302, page_of(candidate))
    assert texts(done) == ["1 model(s) deployed at 100 %"]
    assert pool_traffic(organization) == {"v2.0.0": 100.0}


def test_the_ab_test_button_starts_a_test_at_the_previewed_share(
    ops_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    preview = ops_client.get(button(candidate, "start_ab_test"))
    assert preview.context["form"].initial["traffic_percentage"] == 10.0

    data = {"confirm_step": "1", "apply": "yes", "traffic_percentage": "10", "previewed": "10.0"}
    done = ops_client.post(button(candidate, "start_ab_test"), data)

    assert done.status_code == 302
    assert pool_traffic(organization) == {"v1.0.0": 90.0, "v2.0.0": 10.0}


def test_the_rollback_button_appears_after_a_traffic_step_and_rolls_the_pool_back(
    ops_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    model_start_ab_test(variant=candidate, variant_traffic=10)
    assert offered(ops_client, candidate)["rollback"] == ""

    done = ops_client.post(button(candidate, "rollback"), {"confirm_step": "1", "apply": "yes"})

    assert texts(done) == ["1 pool(s) rolled back"]
    assert pool_traffic(organization) == {"v1.0.0": 100.0}


def test_a_refused_confirmation_shows_the_services_message_on_the_models_page(
    ops_client: Client, organization: Organization
) -> None:
    lonely = RegisteredModelFactory.create(organization=organization)
    data = {"confirm_step": "1", "apply": "yes", "traffic_percentage": "10", "previewed": "10.0"}

    refused = ops_client.post(button(lonely, "start_ab_test"), data)

    assert (refused.status_code, refused["Location"]) == (302, page_of(lonely))
    assert "there is no control to test against" in texts(refused)[-1]
    assert ModelEvent.objects.count() == 0


def test_staff_without_the_deploy_permission_see_no_buttons_and_are_refused_with_403(
    viewer_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    page = viewer_client.get(page_of(candidate))
    preview = viewer_client.get(button(candidate, "deploy_at_full_traffic"))
    applied = viewer_client.post(button(candidate, "deploy_at_full_traffic"), {"confirm_step": "1", "apply": "yes"})

    assert page.status_code == 200
    assert page.context["page_actions"] == [] and not page.context["can_try"]
    assert 'class="model-action"' not in page.content.decode() and 'id="try-model"' not in page.content.decode()
    assert preview.status_code == applied.status_code == 403
    assert pool_traffic(organization) == {"v1.0.0": 100.0}


def test_an_action_the_page_does_not_offer_is_not_found(ops_client: Client, candidate: RegisteredModel) -> None:
    assert ops_client.get(button(candidate, "set_baseline")).status_code == 404
    assert ops_client.get(button(candidate, "archive")).status_code == 404
