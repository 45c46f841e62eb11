"""The simulation drives the real loop: each simulated week a training run, a registry row and an experiment."""

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from experiments.models import Experiment
from outcomes.models import OutcomeLabel
from registry.models import RegisteredModel
from simulator.services import SimulationSpec, simulation_run
from training.models import TrainingRun

pytestmark = pytest.mark.django_db
LEAD_HASH = "lead_hash"


@pytest.fixture(autouse=True)
def _small_training(settings: Any) -> None:
    settings.FINE_TUNING_PROVIDER = "local"
    settings.TRAINING_MIN_EXAMPLES = 3


def test_each_simulated_week_trains_registers_and_tests_a_model_through_the_services() -> None:
    result = simulation_run(spec=SimulationSpec(name="tiny", policy="seed-rule", weeks=3, leads_per_week=300))

    organization = result.organization
    runs = TrainingRun.objects.filter(organization=organization)
    assert [(run.status, run.error) for run in runs] == [(TrainingRun.Status.SUCCEEDED, "")] * 3
    assert RegisteredModel.objects.filter(organization=organization).count() == 1 + 3
    assert Experiment.objects.filter(organization=organization).count() == 3
    assert OutcomeLabel.objects.filter(organization=organization).count() == 4 * 300  # a warm-up week, then 3
    assert [row.messages for row in result.rows] == [300, 300, 300]


def test_a_simulation_of_the_same_name_starts_from_a_fresh_organization() -> None:
    spec = SimulationSpec(name="again", policy="frozen", weeks=1, leads_per_week=20)
    first = simulation_run(spec=spec)
    second = simulation_run(spec=spec)

    assert first.organization.pk != second.organization.pk
    assert OutcomeLabel.objects.filter(organization=second.organization).count() == 2 * 20
    assert [row.expected_replies for row in first.rows] == [row.expected_replies for row in second.rows]


def test_the_command_compares_every_policy_and_writes_its_report(tmp_path: Path) -> None:
    out = StringIO()

    call_command(
        "simulate_market", "--weeks", "2", "--leads-per-week", "60", "--compare", "--report", str(tmp_path), stdout=out
    )

    text = out.getvalue()
    for policy in ("frozen", "seed-rule", "flywheel", "oracle"):
        assert f"simulating default-1-{policy}" in text
    assert "regret" in text
    assert (tmp_path / "weeks.csv").read_text().count("\n") == 1 + 4 * 2
    assert (tmp_path / "expected_reply_rate.svg").read_text().startswith("<svg")


@pytest.mark.django_db(transaction=True)
def test_with_http_the_agents_route_and_report_through_the_api_of_an_in_process_server() -> None:
    result = simulation_run(spec=SimulationSpec(name="wire", policy="frozen", weeks=1, leads_per_week=30, http="local"))

    labels = OutcomeLabel.objects.filter(organization=result.organization)
    assert labels.count() == 2 * 30
    assert labels.filter(delivered_at__isnull=False).count() > 0
    assert result.organization.api_keys.count() == 1


def test_each_label_carries_the_hash_of_the_lead_it_was_routed_for() -> None:
    result = simulation_run(spec=SimulationSpec(name="leads", policy="frozen", weeks=1, leads_per_week=20))

    labels = OutcomeLabel.objects.filter(organization=result.organization)
    hashes = set(labels.values_list(LEAD_HASH, flat=True))  # a column the per-lead statistics add
    assert labels.count() == 40 and len(hashes) == 40 and "" not in hashes
