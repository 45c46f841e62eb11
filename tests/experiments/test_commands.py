"""The deploy_model command: deploys through the experiments, so a new variant beside a control starts a test."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from experiments.models import Experiment
from flywheel.models import Organization
from registry.models import RegisteredModel
from tests.registry.factories import RegisteredModelFactory, pool_traffic

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_deploy_model_deploys_beside_the_others_and_prints_the_changes(
    organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    output = run(
        "deploy_model",
        str(candidate.pk),
        "--traffic-percentage",
        "10",
        "--ab-test-group",
        "variant_a",
        "--reason",
        "try",
    )

    assert pool_traffic(organization) == {"v1.0.0": 90.0, "v2.0.0": 10.0}
    assert "deployed -> deployed  100 % -> 90 %" in output
    assert "ready -> deployed     0 % -> 10 %" in output
    assert f"Deployed v2.0.0 at 10 % of {organization.slug}: 2 model(s) changed." in output
    assert candidate.events.get().actor_label == "system"


def test_deploy_model_dry_run_changes_nothing(
    organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    output = run("deploy_model", str(candidate.pk), "--dry-run")

    assert "Would deploy v2.0.0 at 100 %" in output
    assert "2 model(s) changed" in output
    assert pool_traffic(organization) == {"v1.0.0": 100.0}
    assert not candidate.events.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["not-a-uuid"], "No registered model has the id not-a-uuid"),
        (["00000000-0000-0000-0000-000000000000"], "No registered model"),
    ],
)
def test_deploy_model_reports_an_unknown_model_as_a_command_error(arguments: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("deploy_model", *arguments)


def test_deploy_model_reports_a_refusal_as_a_command_error(organization: Organization) -> None:
    lonely = RegisteredModelFactory.create(organization=organization)

    with pytest.raises(CommandError, match="must take 100 %"):
        run("deploy_model", str(lonely.pk), "--traffic-percentage", "10")


def test_deploy_model_starts_the_ab_test_of_a_new_variant_beside_the_control(
    organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    run("deploy_model", str(candidate.pk), "--traffic-percentage", "20", "--ab-test-group", "variant_a")

    experiment = Experiment.objects.get()
    assert (experiment.control, experiment.variant, experiment.planned_variant_share) == (control, candidate, 0.2)
    assert pool_traffic(organization) == {"v1.0.0": 80.0, "v2.0.0": 20.0}
