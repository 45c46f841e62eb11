"""The experiment admin: the evidence page with its chart, and the action that applies the decision."""

import datetime
import json
import re

import pytest
from django.contrib.admin import helpers
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from experiments.admin import planned_boundaries
from experiments.models import Experiment
from experiments.services import experiment_evaluate, promote_ab_test_winner
from flywheel.models import Organization
from registry.models import RegisteredModel
from tests.experiments.conftest import staff_client
from tests.experiments.experiment_data import in_first_week, send, start
from tests.registry.factories import RegisteredModelFactory, pool_traffic

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:experiments_experiment_changelist"


@pytest.fixture
def variant(organization: Organization) -> RegisteredModel:
    return RegisteredModelFactory.create(organization=organization, model_version="v1.1.0")


@pytest.fixture
def experiment(control: RegisteredModel, variant: RegisteredModel) -> Experiment:
    """A test at look 4 that the variant has clearly won, evaluated at looks 2, 3 and 4."""
    experiment = start(variant, look=4)
    send(control, 40, at=in_first_week(experiment), replies=4)
    send(variant, 40, at=in_first_week(experiment), replies=20, meetings=20, deals=20)
    for weeks_ago in (2, 1, 0):
        experiment_evaluate(experiment, now=timezone.now() - datetime.timedelta(weeks=weeks_ago))
    return experiment


@pytest.fixture
def deployer(client: Client) -> Client:
    return staff_client(client, "view_experiment", "deploy_model")


@pytest.fixture
def viewer(client: Client) -> Client:
    return staff_client(client, "view_experiment")


def change_page(client: Client, experiment: Experiment) -> str:
    response = client.get(reverse("admin:experiments_experiment_change", args=[experiment.pk]))
    assert response.status_code == 200
    return response.content.decode()


def run_action(client: Client, experiment: Experiment, *, apply: bool) -> str:
    data = {"action": "promote_winner", helpers.ACTION_CHECKBOX_NAME: [str(experiment.pk)]}
    if apply:
        data["apply"] = "yes"
    response = client.post(reverse(CHANGELIST), data, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_shows_both_arms_the_statistic_against_its_boundary_and_the_decision(
    deployer: Client, experiment: Experiment
) -> None:
    page = change_page(deployer, experiment)

    assert "The decision as it stands now" in page and "look 4 of 8" in page
    # Leads and messages of each arm: at the deciding look, and in the live table (all, and matured).
    assert page.count('<td class="number">40</td>') == 12
    # The control's and the variant's reply rates:
    assert '<td class="number">10 %</td>' in page and '<td class="number">50 %</td>' in page
    assert "± 2.538" in page  # the boundary at look 4 of 8 with half the planned leads
    assert "the split matches the plan" in page
    assert "Promote the variant" in page
    assert "significantly higher" in page


def test_the_page_shows_the_live_progress_with_intervals_and_provisional_marks(
    deployer: Client, experiment: Experiment
) -> None:
    page = change_page(deployer, experiment)

    assert "Earliest possible decision" in page and "Next look" in page and "Estimated decision date" in page
    assert "all so far (provisional)" in page and "matured" in page
    assert "10 % (0.7 to 19.3 %)" in page  # 4 of 40 replies: 10 % +/- 1.96 * sqrt(0.1 * 0.9 / 40)
    assert '<progress class="experiment-progress"' in page
    assert "Messages without a lead key" in page


def test_the_charts_carry_the_boundary_and_the_statistic_at_each_look(deployer: Client, experiment: Experiment) -> None:
    page = change_page(deployer, experiment)
    found = re.search(r'<script id="experiment-charts" type="application/json">(.*?)</script>', page, re.S)
    assert found is not None
    charts = json.loads(found[1])

    assert charts["looks"] == list(range(1, experiment.planned_looks + 1))
    assert charts["upper"][0] is None and all(bound > 0 for bound in charts["upper"][1:])  # no decision at look 1
    assert [z is not None for z in charts["statistic"]] == [True] * 4 + [False] * 4  # every look so far
    assert charts["days"] and set(charts["rates"]) == {"control", "variant"}
    assert "chart.js-4.6.1/chart.umd.min.js" in page and "flywheel/experiment_charts.js" in page


def test_the_boundary_falls_look_after_look() -> None:
    bounds = planned_boundaries(8, [])
    assert [bounds[k] for k in range(2, 9)] == sorted((bounds[k] for k in range(2, 9)), reverse=True)


def test_a_finished_test_is_shown_at_its_decision(
    deployer: Client, organization: Organization, experiment: Experiment
) -> None:
    promote_ab_test_winner(organization=organization)

    page = change_page(deployer, experiment)

    assert "The test at its decision" in page and "Promote the variant" in page


def test_the_action_confirms_first_then_promotes(
    deployer: Client, organization: Organization, experiment: Experiment
) -> None:
    confirmation = run_action(deployer, experiment, apply=False)

    assert "Yes, evaluate and apply" in confirmation
    assert "would be promoted to 100 %" in confirmation
    assert pool_traffic(organization) == {"v1.0.0": 50.0, "v1.1.0": 50.0}

    done = run_action(deployer, experiment, apply=True)

    assert "1 experiment(s) evaluated: 1 promoted" in done
    assert pool_traffic(organization) == {"v1.1.0": 100.0}
    experiment.refresh_from_db()
    assert experiment.status == "decided"


def test_staff_without_the_deploy_permission_cannot_promote(
    viewer: Client, organization: Organization, experiment: Experiment
) -> None:
    assert "promote_winner" not in viewer.get(reverse(CHANGELIST)).content.decode()

    run_action(viewer, experiment, apply=True)

    assert pool_traffic(organization) == {"v1.0.0": 50.0, "v1.1.0": 50.0}
    experiment.refresh_from_db()
    assert experiment.status == "running"


def test_the_registry_admin_starts_an_ab_test_with_its_experiment(
    client: Client, organization: Organization, control: RegisteredModel, variant: RegisteredModel
) -> None:
    ops = staff_client(client, "view_registeredmodel", "change_registeredmodel", "deploy_model")
    data = {
        "action": "start_ab_test",
        helpers.ACTION_CHECKBOX_NAME: [str(variant.pk)],
        "confirm_step": "1",
        "apply": "yes",
        "traffic_percentage": "10",
        "previewed": "10",
        "reason": "try v1.1",
    }

    response = ops.post(reverse("admin:registry_registeredmodel_changelist"), data, follow=True)

    assert response.status_code == 200
    experiment = Experiment.objects.get()
    assert (experiment.control, experiment.variant, experiment.planned_variant_share) == (control, variant, 0.1)
    assert pool_traffic(organization) == {"v1.0.0": 90.0, "v1.1.0": 10.0}
