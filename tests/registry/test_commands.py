"""The rollback_model and leaderboard commands."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services import model_deploy, model_performance_update
from tests.registry.factories import RegisteredModelFactory, pool_traffic

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_rollback_model_restores_an_organization_pool_by_slug(
    organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    model_deploy(model=candidate, traffic_percentage=100)

    output = run("rollback_model", "--organization", organization.slug, "--reason", "bad release")

    assert pool_traffic(organization) == {"v1.0.0": 100.0}
    assert f"Rolled back {organization.slug}: 2 model(s) changed." in output
    assert ModelEvent.objects.filter(action="rolled_back", reason__startswith="bad release").count() == 2


def test_rollback_model_defaults_to_the_global_pool_and_accepts_an_id(organization: Organization) -> None:
    model_deploy(model=RegisteredModelFactory.create(), traffic_percentage=100)

    assert "Rolled back the global pool: 1 model(s) changed." in run("rollback_model")
    with pytest.raises(CommandError, match="no traffic change to roll back"):
        run("rollback_model", "--organization", str(organization.pk))
    with pytest.raises(CommandError, match="No organization has the slug or id 'nope'"):
        run("rollback_model", "--organization", "nope")


def test_leaderboard_prints_the_pool_best_first_with_min_samples(
    organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    model_performance_update(model=control, messages_sent=200, replies=20, deals_closed=4, revenue=1000)
    model_performance_update(model=candidate, messages_sent=10, replies=5, deals_closed=5)

    everyone = run("leaderboard", "--organization", organization.slug, "--min-samples", "0")
    seasoned = run("leaderboard", "--organization", organization.slug, "--min-samples", "100")

    lines = everyone.splitlines()
    assert lines[0].split()[:3] == ["close", "#", "reply"]
    assert [line.split()[3] for line in lines[1:3]] == ["v2.0.0", "v1.0.0"]
    assert "50.00%" in lines[1] and "2.00%" in lines[2]
    assert f"2 model(s) in {organization.slug} with at least 0 message(s) sent." in everyone
    assert "v2.0.0" not in seasoned
    assert f"1 model(s) in {organization.slug} with at least 100 message(s) sent." in seasoned


def test_leaderboard_refuses_negative_min_samples() -> None:
    with pytest.raises(CommandError, match="cannot be negative"):
        run("leaderboard", "--min-samples", "-1")


def test_list_models_shows_the_pools_models_newest_first_with_their_traffic(
    organization: Organization, control: RegisteredModel, candidate: RegisteredModel
) -> None:
    RegisteredModelFactory.create(model_version="v9.0.0")  # the global pool's: not listed
    lines = run("list_models", "--organization", organization.slug).splitlines()
    assert lines[0].split()[:3] == ["version", "status", "traffic"]
    assert [line.split()[0] for line in lines[1:3]] == ["v2.0.0", "v1.0.0"]
    assert "deployed  100 %" in lines[2]
    assert lines[-1] == f"2 model(s) in {organization.slug}."
    assert run("list_models", "--organization", organization.slug, "--status", "ready").count("v2.0.0") == 1
    with pytest.raises(CommandError, match="No organization"):
        run("list_models", "--organization", "nobody")
