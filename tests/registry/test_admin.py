"""The registry admin: traffic actions behind a confirmation page and a permission, the leaderboard, the audit trail."""

from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services import model_performance_update, model_start_ab_test
from tests.registry.conftest import texts
from tests.registry.factories import RegisteredModelFactory, pool_traffic

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:registry_registeredmodel_changelist")
LEADERBOARD = reverse("admin:registry_registeredmodel_leaderboard")
Status = RegisteredModel.Status
TRAFFIC_ACTIONS = ["deploy_at_full_traffic", "start_ab_test", "set_traffic", "archive", "rollback"]


def choose(client: Client, action: str, *models: RegisteredModel) -> Any:
    """Pick ``action`` for ``models`` on the changelist, as the actions bar does."""
    data = {"action": action, "index": "0", ACTION_CHECKBOX_NAME: [str(m.pk) for m in models]}
    return client.post(CHANGELIST, data)


def confirm(client: Client, action: str, *models: RegisteredModel, **fields: Any) -> Any:
    """Submit an action's confirmation page."""
    data = {"action": action, "confirm_step": "1", "apply": "yes", ACTION_CHECKBOX_NAME: [str(m.pk) for m in models]}
    return client.post(CHANGELIST, {**data, **fields})


def test_deploying_at_100_percent_shows_before_and_after_then_applies_on_confirmation(
    ops_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    page = choose(ops_client, "deploy_at_full_traffic", candidate)

    assert page.status_code == 200
    assert page.templates[0].name == "admin/registry/registeredmodel/confirm_traffic.html"
    rows = {
        (e.model.model_version, e.status_before, e.status_after, e.traffic_before, e.traffic_after)
        for e in page.context["events"]
    }
    assert rows == {("v1.0.0", "deployed", "archived", 100.0, 0.0), ("v2.0.0", "ready", "deployed", 0.0, 100.0)}
    assert pool_traffic(organization) == {"v1.0.0": 100.0}  # nothing moved yet

    done = confirm(ops_client, "deploy_at_full_traffic", candidate, reason="weekly model")

    assert done.status_code == 302
    assert texts(done) == ["1 model(s) deployed at 100 %"]
    assert pool_traffic(organization) == {"v2.0.0": 100.0}
    event = candidate.events.get(action="deployed")
    assert event.actor_user is not None
    assert (event.actor_label, event.reason) == (event.actor_user.username, "weekly model")
    assert event.actor_user.has_perm("registry.deploy_model")


def test_an_ab_test_defaults_to_10_percent_and_previews_a_changed_percentage_before_applying_it(
    ops_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    page = choose(ops_client, "start_ab_test", candidate)
    assert page.context["form"].initial["traffic_percentage"] == 10.0

    repreview = confirm(ops_client, "start_ab_test", candidate, traffic_percentage="25", previewed="10.0")

    assert repreview.status_code == 200
    assert {(e.model.model_version, e.traffic_after) for e in repreview.context["events"]} == {
        ("v1.0.0", 75.0),
        ("v2.0.0", 25.0),
    }
    assert pool_traffic(organization) == {"v1.0.0": 100.0}

    confirm(ops_client, "start_ab_test", candidate, traffic_percentage="25", previewed="25.0")

    assert pool_traffic(organization) == {"v1.0.0": 75.0, "v2.0.0": 25.0}
    groups = dict(RegisteredModel.objects.deployed().values_list("model_version", "ab_test_group"))
    assert groups == {"v1.0.0": "control", "v2.0.0": "variant_a"}


def test_setting_traffic_rescales_the_pool(
    ops_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    model_start_ab_test(variant=candidate, variant_traffic=10)

    confirm(ops_client, "set_traffic", candidate, traffic_percentage="40", previewed="40.0")

    assert pool_traffic(organization) == {"v1.0.0": 60.0, "v2.0.0": 40.0}


def test_archiving_several_models_at_once(
    ops_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    page = choose(ops_client, "archive", control, candidate)
    assert "the pool has no deployed model now" in page.content.decode()

    response = confirm(ops_client, "archive", control, candidate)

    assert texts(response) == ["2 model(s) archived"]
    assert set(RegisteredModel.objects.values_list("status", flat=True)) == {Status.ARCHIVED}


def test_rolling_back_the_pool_of_a_selected_model(
    ops_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    model_start_ab_test(variant=candidate, variant_traffic=10)

    response = confirm(ops_client, "rollback", candidate)

    assert texts(response) == ["1 pool(s) rolled back"]
    assert pool_traffic(organization) == {"v1.0.0": 100.0}


def test_setting_the_baseline(ops_client: Client, candidate: RegisteredModel) -> None:
    response = choose(ops_client, "set_baseline", candidate)

    candidate.refresh_from_db()
    assert candidate.is_baseline
    assert texts(response) == ["v2.0.0 is now the baseline of its pool."]


def test_a_domain_error_is_a_message_not_a_500(ops_client: Client, organization: Organization) -> None:
    failed = RegisteredModelFactory.create(organization=organization, status=Status.FAILED)
    lonely = RegisteredModelFactory.create(organization=organization)

    refused = choose(ops_client, "deploy_at_full_traffic", failed)
    no_control = confirm(ops_client, "start_ab_test", lonely, traffic_percentage="10", previewed="10.0")

    assert refused.status_code == no_control.status_code == 302
    assert texts(refused) == [f"Deploy at 100 %: {failed.model_version} has failed and cannot be deployed."]
    assert "there is no control to test against" in texts(no_control)[-1]
    assert ModelEvent.objects.count() == 0


def test_a_single_model_action_on_two_models_is_refused(
    ops_client: Client, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    response = choose(ops_client, "set_traffic", control, candidate)

    assert texts(response) == ["Set traffic: select exactly one model."]


def test_an_invalid_percentage_shows_the_page_again_with_the_error(
    ops_client: Client, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    response = confirm(ops_client, "start_ab_test", candidate, traffic_percentage="250", previewed="10.0")

    assert response.status_code == 200
    assert response.context["form"].errors["traffic_percentage"]
    assert candidate.events.count() == 0


@pytest.mark.parametrize("action", [*TRAFFIC_ACTIONS, "set_baseline"])
def test_staff_without_the_deploy_permission_cannot_move_traffic(
    viewer_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel, action: str
) -> None:
    model_start_ab_test(variant=candidate, variant_traffic=10)
    events = ModelEvent.objects.count()

    listed = viewer_client.get(CHANGELIST)
    chosen = choose(viewer_client, action, candidate)
    confirmed = confirm(viewer_client, action, candidate, traffic_percentage="50", previewed="50.0")

    assert f'value="{action}"' not in listed.content.decode()
    # Django offers such a user no action at all, so the POSTs just show the list again.
    assert chosen.status_code == confirmed.status_code == 200
    assert chosen.templates[0].name == confirmed.templates[0].name == "admin/registry/registeredmodel/change_list.html"
    assert ModelEvent.objects.count() == events
    assert pool_traffic(organization) == {"v1.0.0": 90.0, "v2.0.0": 10.0}


def test_ops_staff_see_every_action(ops_client: Client, control: RegisteredModel) -> None:
    page = ops_client.get(CHANGELIST).content.decode()

    assert all(f'value="{action}"' in page for action in [*TRAFFIC_ACTIONS, "set_baseline"])
    assert LEADERBOARD in page


def test_the_change_page_shows_the_audit_trail_read_only(ops_client: Client, control: RegisteredModel) -> None:
    page = ops_client.get(reverse("admin:registry_registeredmodel_change", args=[control.pk]))

    assert page.status_code == 200
    [inline] = page.context["inline_admin_formsets"]
    assert [form.original.action for form in inline] == ["deployed"]
    assert not inline.has_add_permission and not inline.has_delete_permission and not inline.has_change_permission


def test_the_leaderboard_page_reads_the_view_for_a_pool(
    viewer_client: Client, organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    model_performance_update(model=control, messages_sent=200, replies=20, deals_closed=4)
    model_performance_update(model=candidate, messages_sent=10, replies=5, deals_closed=5)

    everyone = viewer_client.get(LEADERBOARD, {"pool": str(organization.pk), "min_samples": "0"})
    seasoned = viewer_client.get(LEADERBOARD, {"pool": str(organization.pk), "min_samples": "100"})
    global_pool = viewer_client.get(LEADERBOARD, {"pool": "not-an-id", "min_samples": "0"})

    assert [e.model_version for e in everyone.context["entries"]] == ["v2.0.0", "v1.0.0"]
    assert [e.model_version for e in seasoned.context["entries"]] == ["v1.0.0"]
    assert list(global_pool.context["entries"]) == []
    assert "v1.0.0" in seasoned.content.decode()


@pytest.mark.parametrize("name", ["registry_modelevent", "experiments_experiment"])
def test_the_audit_and_experiment_lists_open(admin_client: Client, control: RegisteredModel, name: str) -> None:
    assert admin_client.get(reverse(f"admin:{name}_changelist")).status_code == 200
