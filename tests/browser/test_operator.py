"""The operator's day in Chromium: the dashboard, a training cycle, an A/B test, a deploy and its rollback.

Each test logs in to the admin of a live server whose pool the simulator's services filled, and
acts through the pages as a person would: the links, the forms, the confirmation pages. Every page
visited is checked for console errors and for overflow at 1400 px (see ``conftest.Operator``).
"""

from typing import Any

import pytest

from experiments.models import Experiment
from outcomes.models import OutcomeLabel
from registry.models import RegisteredModel
from tests.browser.conftest import Operator
from tests.experiments.experiment_data import send
from tests.factories import make_api_key
from training import tasks
from training.models import TrainingRun
from training.services import training_run_start

pytestmark = pytest.mark.browser


def test_the_operator_lands_on_the_dashboard_with_its_charts_drawn(operator: Operator, simulated: Any) -> None:
    operator.goto(f"/admin/?pool={simulated.slug}")
    canvases = operator.page.locator("canvas")
    assert canvases.count() >= 3
    operator.page.wait_for_function(CHARTS_DRAWN)  # every canvas holds a Chart.js chart with painted pixels
    operator.settled()
    operator.shot("dashboard.png")


# Each canvas has its Chart.js instance and some non-transparent pixel (the chart, not a blank canvas).
CHARTS_DRAWN = """() => window.Chart && [...document.querySelectorAll('canvas')].every(canvas => {
  if (!Chart.getChart(canvas) || !canvas.width || !canvas.height) return false;
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
  return false;
})"""


LISTS = [
    "registry/registeredmodel",
    "registry/modelevent",
    "training/trainingrun",
    "outcomes/outcomelabel",
    "experiments/experiment",
    "flywheel/organization",
    "flywheel/organizationapikey",
]


def test_every_list_fits_the_window_and_its_results_box_without_scrolling_sideways(
    operator: Operator, simulated: Any
) -> None:
    make_api_key(simulated)
    for path in LISTS:
        operator.goto(f"/admin/{path}/")  # settled() measures the page and the list's results box
        assert operator.page.locator("#result_list").count() == 1, path
        operator.shot(f"list-{path.replace('/', '-')}.png")
    operator.goto("/admin/registry/registeredmodel/")
    assert simulated.name in operator.page.inner_text("#result_list")  # the pool by its name
    operator.shot("registry-list.png")


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

    # The cluster polls the job; the page, never reloaded, follows the run on its own to its end.
    operator.page.evaluate("() => { window.sameDocument = true; }")  # gone if the page reloaded
    for _ in range(10):
        run.refresh_from_db()
        operator.page.wait_for_function(SHOWS_STATUS, arg=run.get_status_display(), timeout=15_000)
        if not run.is_active:
            break
        tasks.poll_run(str(run.pk))  # what the run's poll schedule calls in the cluster
    assert shown_status(operator) == "Succeeded"
    assert operator.page.inner_text("#content > h2") == str(run)
    assert operator.page.evaluate("() => window.sameDocument === true")
    assert operator.page.inner_text(".field-resulting_model .readonly") != "-"
    operator.page.wait_for_function("() => document.querySelector('#run-refresh').innerText.includes('stopped')")
    operator.settled()
    operator.shot("training-run-succeeded.png")
    operator.page.locator("#dataset-panel").scroll_into_view_if_needed()  # arrived with the refresh
    assert operator.page.locator(".dataset-example").count() >= 1
    assert operator.page.locator(f"a[href$='/{run.pk}/dataset/training/']").count() == 1
    operator.shot("training-run-dataset.png")


# The page's status cell shows the status ``arg`` (the page updates itself every few seconds).
SHOWS_STATUS = "(status) => document.querySelector('.field-status .readonly').innerText.trim() === status"


def shown_status(operator: Operator) -> str:
    return operator.page.inner_text(".field-status .readonly").strip()


def test_an_ab_test_started_from_the_registry_shows_live_numbers_and_stops_with_a_reason(
    operator: Operator, simulated: Any
) -> None:
    candidate = a_trained_version(simulated)
    running = Experiment.objects.get(organization=simulated, status=Experiment.Status.RUNNING)
    operator.goto(f"/admin/experiments/experiment/{running.pk}/change/")
    assert live_row(operator, "variant", running.variant.model_version)[1] > 0  # simulated leads so far
    operator.page.locator(".experiment-report").scroll_into_view_if_needed()
    operator.shot("experiment-running.png")
    stop_from_the_list(operator, running, reason="Make room for the newly trained version")

    operator.goto("/admin/registry/registeredmodel/")
    run_action(operator, candidate.pk, "start_ab_test")
    operator.page.fill("#id_reason", "Test the newly trained version")
    operator.page.click("input[name=apply]")
    operator.settled()
    started = Experiment.objects.get(organization=simulated, status=Experiment.Status.RUNNING)
    assert started.variant == candidate

    send(candidate, 40, at=started.started_at, replies=6)
    send(started.control, 40, at=started.started_at, replies=3)
    operator.goto(f"/admin/experiments/experiment/{started.pk}/change/")
    assert live_row(operator, "variant", candidate.model_version) == (40, 40, "15 %")
    assert live_row(operator, "control", started.control.model_version) == (40, 40, "7.5 %")
    stop_from_the_list(operator, started, reason="Enough seen in the browser")
    started.refresh_from_db()
    assert (started.status, started.end_reason) == (Experiment.Status.STOPPED, "Enough seen in the browser")


def test_a_deploy_over_a_running_test_then_its_rollback_are_in_the_audit_trail(
    operator: Operator, simulated: Any
) -> None:
    candidate = a_trained_version(simulated)
    before = traffic(simulated)

    operator.goto("/admin/registry/registeredmodel/")
    run_action(operator, candidate.pk, "deploy_at_full_traffic")
    assert "A/B test" in operator.page.inner_text(".messagelist")  # refused while the test runs
    operator.page.fill("#id_reason", "Ship the new version now")
    operator.page.check("#id_override_experiment")
    operator.page.click("input[value='Preview with the override']")
    operator.settled()
    operator.page.click("input[name=apply]")
    operator.settled()
    candidate.refresh_from_db()
    assert (candidate.status, candidate.traffic_percentage) == (RegisteredModel.Status.DEPLOYED, 100.0)

    run_action(operator, candidate.pk, "rollback")
    operator.page.fill("#id_reason", "Replies dropped after the deploy")
    operator.page.click("input[name=apply]")
    operator.settled()
    assert "1 pool(s) rolled back" in operator.page.inner_text(".messagelist")
    assert traffic(simulated) == before  # the split before the deploy is back; the new version is ready again

    operator.goto(f"/admin/registry/modelevent/?organization__id__exact={simulated.pk}")
    audit = operator.page.inner_text("#result_list")
    for action, reason in [("Deployed", "Ship the new version now"), ("Rolled back", "Replies dropped after")]:
        assert action in audit and reason in audit, (action, audit)
    operator.shot("audit-trail.png")

    operator.goto("/admin/")  # the admin's own log: "Recent actions", then the model's history
    recent = operator.page.inner_text("#recent-actions-module")
    assert str(candidate) in recent, recent
    operator.page.locator("#recent-actions-module").scroll_into_view_if_needed()
    operator.shot("recent-actions.png")
    operator.goto(f"/admin/registry/registeredmodel/{candidate.pk}/history/")
    history = operator.page.inner_text("#change-history")
    for told in ("Deployed: ready → deployed, traffic 0 % → 100 % (reason: Ship the new version now", "Rolled back"):
        assert told in history, (told, history)


def traffic(organization: Any) -> list[tuple[str, str, float]]:
    models = RegisteredModel.objects.filter(organization=organization).order_by("model_version")
    return list(models.values_list("model_version", "status", "traffic_percentage"))


def a_trained_version(organization: Any) -> RegisteredModel:
    """A version trained by the services for ``organization``, registered as ready."""
    run = training_run_start(organization=organization, force=True, triggered_by=TrainingRun.Trigger.API, actor=None)
    for _ in range(10):
        run.refresh_from_db()
        if run.status not in TrainingRun.ACTIVE_STATUSES:
            break
        tasks.poll_run(str(run.pk))
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.registered_model is not None
    return run.registered_model


def live_row(operator: Operator, arm: str, version: str) -> tuple[int, int, str]:
    """Leads, messages and reply rate of ``arm`` in the experiment page's live (provisional) table."""
    for row in operator.page.locator(".experiment-report tr").all():
        cells = [cell.strip() for cell in row.locator("td").all_inner_texts()]
        if cells[:2] == [arm, version] and cells[2].startswith("all so far"):
            return int(cells[3]), int(cells[4]), cells[5].split(" (")[0]
    raise AssertionError(f"no live row for the {arm} {version}")


def run_action(operator: Operator, pk: Any, action: str) -> None:
    """Tick one row of the list shown, choose ``action`` and run it."""
    operator.page.check(f"input[name=_selected_action][value='{pk}']")
    operator.page.select_option("select[name=action]", action)
    operator.page.click("button[name=index]")
    operator.settled()


def stop_from_the_list(operator: Operator, experiment: Experiment, *, reason: str) -> None:
    operator.goto("/admin/experiments/experiment/")
    run_action(operator, experiment.pk, "stop_test")
    operator.page.fill("#id_reason", reason)
    operator.page.click("input[name=apply]")
    operator.settled()
    assert "1 experiment(s) stopped" in operator.page.inner_text(".messagelist")


def test_a_models_page_offers_its_actions_and_answers_a_prompt(operator: Operator, simulated: Any) -> None:
    candidate = a_trained_version(simulated)
    operator.goto(f"/admin/registry/registeredmodel/{candidate.pk}/change/")
    tools = operator.page.locator(".object-tools a").all_text_contents()
    assert {"Deploy at 100 %", "Try this model"} <= set(tools), tools

    operator.page.click("text=Try this model")
    operator.page.fill("#id_user_prompt", "Write a message for: Industry=SaaS, Role=VP Sales, Tone=professional.")
    operator.page.click("input[name=try]")
    operator.settled()
    assert operator.page.inner_text(".try-answer").strip()  # the local provider's exemplar for the segment
    operator.shot("model-try.png")  # the answer in view: the form posts to the box's anchor

    label = OutcomeLabel.objects.filter(organization=simulated).order_by("-quality_score").first()
    assert label is not None
    operator.goto(f"/admin/outcomes/outcomelabel/{label.pk}/change/")
    rows = operator.page.locator(".score-breakdown tr").all_inner_texts()
    assert rows[-1].split() == ["Quality", "score", f"{label.quality_score:.6f}".rstrip("0").rstrip(".")]
