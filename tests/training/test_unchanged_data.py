"""A run whose dataset equals the pool's last successful run's ends skipped, unless forced.

Through the service, the API (``force`` in ``POST /training/run``), the command (``--force``) and
the weekly schedule; a skipped run registers nothing, takes no version and fails nothing.
"""

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django_q.models import Task

from flywheel.models import Organization
from registry.models import RegisteredModel
from tests.api_clients import Tenant, assert_error
from tests.factories import OrganizationFactory
from tests.training.helpers import drive, failed_tasks, make_labels
from training import tasks
from training.models import TrainingRun
from training.selectors import next_version
from training.services import training_run_start

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("run_settings")]

Status = TrainingRun.Status


def trained(organization: Organization | None, **options: Any) -> TrainingRun:
    return drive(training_run_start(organization=organization, triggered_by="command", actor=None, **options))


def test_a_run_on_the_last_successful_dataset_ends_skipped_and_registers_nothing(organization: Organization) -> None:
    make_labels(organization)
    first = trained(organization)
    second = trained(organization)

    assert (first.status, second.status) == (Status.SUCCEEDED, Status.SKIPPED)
    assert second.error.startswith("No new data since v2.1.0: the dataset's examples (digest ")
    assert second.dataset_digest == first.dataset_digest and second.model_version == ""
    assert RegisteredModel.objects.count() == 1
    assert next_version(organization_id=organization.pk) == "v2.2.0"  # the skipped run took no version
    assert second.finished_at is not None and not second.is_active


def test_a_forced_run_trains_again_on_the_same_data(organization: Organization) -> None:
    make_labels(organization)
    trained(organization)
    forced = trained(organization, force=True)
    assert (forced.status, forced.model_version, forced.force) == (Status.SUCCEEDED, "v2.2.0", True)


def test_only_the_last_success_counts_and_other_pools_do_not(organization: Organization) -> None:
    other_organization = OrganizationFactory.create(slug="other")
    make_labels(organization)
    make_labels(other_organization)
    trained(organization)
    assert trained(other_organization).status == Status.SUCCEEDED  # its own pool, its own history
    make_labels(organization, positives=1)
    assert trained(organization).status == Status.SUCCEEDED  # new data
    assert trained(organization).status == Status.SKIPPED


def test_the_api_takes_force_and_shows_it(tenant: Tenant) -> None:
    make_labels(tenant.organization)
    trained(tenant.organization)
    response = tenant.ops.post("/training/run", {"force": True}, format="json")
    assert response.status_code == 202 and response.json()["force"] is True
    assert drive(TrainingRun.objects.get(pk=response.json()["id"])).status == Status.SUCCEEDED

    skipped = tenant.ops.post("/training/run", {}, format="json").json()
    run = drive(TrainingRun.objects.get(pk=skipped["id"]))
    body = tenant.ops.get(f"/training/runs/{run.pk}").json()
    assert (body["run_status"], body["force"]) == ("skipped", False) and "No new data since v2.2.0" in body["error"]


def test_the_api_refuses_a_force_that_is_not_a_boolean(tenant: Tenant) -> None:
    error = assert_error(tenant.ops.post("/training/run", {"force": "perhaps"}, format="json"), 400)
    assert set(error["details"]) == {"force"}


def test_the_command_reports_a_skip_without_failing_and_force_trains(organization: Organization) -> None:
    make_labels(organization)
    trained(organization)
    out = StringIO()
    call_command("run_training_cycle", "--organization", organization.slug, "--wait", stdout=out)
    assert "Ended: skipped (No new data since v2.1.0" in out.getvalue()
    out = StringIO()
    call_command("run_training_cycle", "--organization", organization.slug, "--wait", "--force", stdout=out)
    assert "Training run succeeded." in out.getvalue()


def test_a_weekly_run_on_unchanged_data_is_skipped_not_failed(organization: Organization) -> None:
    make_labels(organization)
    trained(organization)
    run_id = tasks.weekly_training(str(organization.pk))
    assert run_id is not None
    run = drive(TrainingRun.objects.get(pk=run_id))
    assert run.status == Status.SKIPPED
    assert failed_tasks() == [] and not Task.objects.filter(success=False).exists()
    assert TrainingRun.objects.filter(status=Status.FAILED).count() == 0


def test_the_admin_shows_a_skipped_run_with_its_reason_and_whether_it_was_forced(
    admin_client: Client, organization: Organization
) -> None:
    make_labels(organization)
    trained(organization)
    skipped = trained(organization)
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[skipped.pk])).content.decode()
    assert "Skipped" in page and "No new data since v2.1.0" in page and "Force" in page
    listing = admin_client.get(reverse("admin:training_trainingrun_changelist"), {"status__exact": "skipped"})
    assert reverse("admin:training_trainingrun_change", args=[skipped.pk]) in listing.content.decode()
    assert listing.context["cl"].result_count == 1
