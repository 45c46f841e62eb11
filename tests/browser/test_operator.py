"""The operator's day in Chromium: the dashboard, a training cycle, an A/B test, a deploy and its rollback.

Each test logs in to the admin of a live server whose pool the simulator's services filled, and
acts through the pages as a person would: the links, the forms, the confirmation pages. Every page
visited is checked for console errors and for overflow at 1400 px (see ``conftest.Operator``).
"""

from typing import Any

import pytest

from experiments.models import Experiment
from registry.models import RegisteredModel
from tests.browser.conftest import Operator
from training import tasks
from training.models import TrainingRun

pytestmark = pytest.mark.browser


def test_a_training_cycle_started_from_the_admin_runs_to_its_end(operator: Operator, simulated: Any) -> None:
    before = TrainingRun.objects.filter(organization=simulated).count()
    operator.goto("/admin/training/trainingrun/")
    operator.page.click("text=Run training cycle now")
    operator.settled()
    operator.page.select_option("#id_organization", str(simulated.pk))
    operator.page.check("#id_force")
    operator.page.click("input[value=Review]")
    operator.settled()
    operator.page.click("input[name=confirm]")
    operator.settled()
    assert "started for" in operator.page.inner_text(".messagelist")
    run = TrainingRun.objects.filter(organization=simulated).latest("created_at")
    assert TrainingRun.objects.filter(organization=simulated).count() == before + 1

    # The run page does not refresh itself: the operator reloads it while the cluster polls the job.
    for _ in range(10):
        if run_status(operator) not in ACTIVE:
            break
        tasks.poll_run(str(run.pk))  # what the run's poll schedule calls in the cluster
        operator.page.reload()
        operator.settled()
    assert run_status(operator) == "Succeeded"
    assert operator.page.inner_text(".field-resulting_model .readonly") != "-"
    operator.shot("training-run-succeeded.png")


ACTIVE = {str(label) for status, label in TrainingRun.Status.choices if status in TrainingRun.ACTIVE_STATUSES}


def run_status(operator: Operator) -> str:
    return operator.page.inner_text(".field-status .readonly").strip()
