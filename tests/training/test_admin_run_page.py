"""A run's admin page: its status as JSON for the page's refresh, and its dataset's preview and download."""

import hashlib
import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from flywheel.models import Organization
from tests.factories import OrganizationFactory, UserFactory
from tests.training.helpers import drive, drive_to, make_labels
from training.datasets.storage import dataset_read, dataset_storage
from training.models import TrainingRun
from training.services import training_run_start

pytestmark = pytest.mark.django_db

Status = TrainingRun.Status


@pytest.fixture(autouse=True)
def _training_settings(settings: Any) -> None:
    settings.TRAINING_MIN_EXAMPLES = 10
    settings.FINE_TUNING_PROVIDER = "local"


@pytest.fixture
def organization() -> Organization:
    organization = OrganizationFactory.create(slug="acme", name="Acme")
    make_labels(organization)
    return organization


def staff_client(*permissions: str) -> Client:
    user = UserFactory.create(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client


def start(organization: Organization) -> TrainingRun:
    return training_run_start(organization=organization, triggered_by="command", actor=None)


def page_of(run: TrainingRun) -> str:
    return reverse("admin:training_trainingrun_change", args=[run.pk])


def status_of(run: TrainingRun) -> str:
    return reverse("admin:training_trainingrun_status", args=[run.pk])


def download_of(run: TrainingRun, which: str = "training") -> str:
    return reverse("admin:training_trainingrun_dataset", args=[run.pk, which])


# --- The status the page polls --------------------------------------------------------------------


def test_the_status_endpoint_gives_the_status_and_the_fields_as_the_page_renders_them(
    organization: Organization,
) -> None:
    run = drive_to(start(organization), Status.TRAINING)
    client = staff_client("view_trainingrun")
    answer = client.get(status_of(run)).json()
    assert (answer["id"], answer["status"], answer["status_label"], answer["active"]) == (
        str(run.pk),
        "training",
        "Training",
        True,
    )
    assert (answer["refresh_ms"], answer["subtitle"]) == (3000, str(run))
    assert answer["fields"]["status"] == "Training"
    assert answer["fields"]["resulting_model"] == "-"
    page = client.get(page_of(run)).content.decode()
    for name in ("pool_name", "status", "dataset_sha256", "examples_count", "events_table"):
        assert f'<div class="readonly">{answer["fields"][name]}</div>' in page, name
    assert "dataset_panel" not in answer  # the page already shows this dataset


def test_the_status_endpoint_says_a_finished_run_is_no_longer_active_with_its_model(
    organization: Organization,
) -> None:
    run = drive(start(organization))
    answer = staff_client("view_trainingrun").get(status_of(run)).json()
    assert (answer["status"], answer["active"]) == ("succeeded", False)
    assert (
        reverse("admin:registry_registeredmodel_change", args=[run.registered_model_id])
        in (answer["fields"]["resulting_model"])
    )
    assert "<table>" in answer["fields"]["events_table"]


def test_the_status_endpoint_sends_the_dataset_panel_once_the_page_shows_an_older_dataset(
    organization: Organization,
) -> None:
    run = drive(start(organization))
    client = staff_client("view_trainingrun", "download_dataset")
    answer = client.get(status_of(run), {"dataset_sha256": ""}).json()
    assert run.dataset_sha256 in answer["dataset_panel"]
    assert answer["dataset_sha256"] == run.dataset_sha256


def test_the_status_endpoint_refuses_staff_who_may_not_see_runs(organization: Organization) -> None:
    run = start(organization)
    assert staff_client("view_registeredmodel").get(status_of(run)).status_code == 403


def test_the_status_endpoint_sends_anonymous_visitors_to_the_login(organization: Organization) -> None:
    response = Client().get(status_of(start(organization)))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_status_endpoint_answers_404_for_an_unknown_run() -> None:
    missing = reverse("admin:training_trainingrun_status", args=["00000000-0000-0000-0000-000000000000"])
    assert staff_client("view_trainingrun").get(missing).status_code == 404


def test_an_active_runs_page_loads_the_refresh_script_and_a_finished_ones_does_not(
    organization: Organization,
) -> None:
    client = staff_client("view_trainingrun")
    run = drive_to(start(organization), Status.TRAINING)
    page = client.get(page_of(run)).content.decode()
    assert "training/run_page.js" in page and f'data-status-url="{status_of(run)}"' in page
    finished = client.get(page_of(drive(run))).content.decode()
    assert "training/run_page.js" not in finished and "data-status-url" not in finished


# --- The dataset's preview and download --------------------------------------------------------------


def test_the_run_page_previews_the_first_five_examples_with_their_roles(organization: Organization) -> None:
    run = drive(start(organization))
    page = staff_client("view_trainingrun", "download_dataset").get(page_of(run)).content.decode()
    first = json.loads(dataset_read(run.dataset_path).splitlines()[0])
    assert page.count('class="dataset-example"') == 5
    assert '<span class="role">system</span>' in page and '<span class="role">assistant</span>' in page
    assert first["messages"][-1]["content"].splitlines()[0] in page
    assert download_of(run) in page and run.dataset_sha256 in page


def test_the_preview_shows_dpo_pairs_and_kto_completions_readably(organization: Organization) -> None:
    run = drive(start(organization))
    dpo = {
        "input": {"messages": [{"role": "user", "content": "Write to a CFO"}]},
        "preferred_output": [{"role": "assistant", "content": "Short and sharp"}],
        "non_preferred_output": [{"role": "assistant", "content": "Long and vague"}],
    }
    kto = {
        "prompt": [{"role": "user", "content": "Write to a CTO"}],
        "completion": [{"role": "assistant", "content": "Hi"}],
        "label": False,
    }
    odd = {"input": "a prompt, not messages", "preferred_output": "a text, not messages"}
    lines = [json.dumps(dpo), json.dumps(kto), "{not json", json.dumps(odd), json.dumps({"text": "plain"})]
    storage = dataset_storage()
    storage.delete(run.dataset_path)
    storage.save(run.dataset_path, ContentFile("\n".join(lines).encode()))
    page = staff_client("view_trainingrun", "download_dataset").get(page_of(run)).content.decode()
    for text in (
        "Preferred reply",
        "Short and sharp",
        "Non-preferred reply",
        "Long and vague",
        "Completion (undesirable)",
    ):
        assert text in page
    assert "Cannot be shown: not valid JSON." in page
    assert "Cannot be shown: an unknown shape (keys: text)." in page
    assert page.count('class="dataset-example"') == 5  # the odd DPO row shows its (empty) parts, no 500


def test_the_preview_reads_only_the_head_of_a_large_file(organization: Organization) -> None:
    run = drive(start(organization))
    line = dataset_read(run.dataset_path).splitlines()[0]
    storage = dataset_storage()
    storage.delete(run.dataset_path)
    storage.save(run.dataset_path, ContentFile(line + b"\n" + b"x" * (4 << 20)))  # a 4 MiB unparseable tail
    page = staff_client("view_trainingrun", "download_dataset").get(page_of(run)).content.decode()
    assert page.count('class="dataset-example"') == 1  # the tail, cut at the bound, is left out
    assert len(page) < 300_000


def test_the_download_streams_the_stored_file_as_an_attachment_with_its_sha256(organization: Organization) -> None:
    run = drive(start(organization))
    response = staff_client("view_trainingrun", "download_dataset").get(download_of(run))
    body = response.getvalue()
    assert response.status_code == 200
    assert body == dataset_read(run.dataset_path)
    assert response["Content-Type"] == "application/jsonl"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}.jsonl"'
    assert response["X-Dataset-SHA256"] == run.dataset_sha256 == hashlib.sha256(body).hexdigest()


def test_the_validation_file_can_be_downloaded_too(settings: Any, organization: Organization) -> None:
    make_labels(organization, positives=20)
    run = training_run_start(organization=organization, triggered_by="command", actor=None, validation_percent=20)
    run = drive(run)
    assert run.validation_path
    response = staff_client("view_trainingrun", "download_dataset").get(download_of(run, "validation"))
    assert response.getvalue() == dataset_read(run.validation_path)
    assert "X-Dataset-SHA256" not in response


def test_without_the_permission_there_is_no_preview_no_link_and_the_download_is_refused(
    organization: Organization,
) -> None:
    run = drive(start(organization))
    client = staff_client("view_trainingrun")
    page = client.get(page_of(run)).content.decode()
    assert download_of(run) not in page and 'class="dataset-example"' not in page
    assert "Can preview and download training datasets" in page
    assert client.get(download_of(run)).status_code == 403


def test_a_file_missing_from_the_storage_is_said_on_the_page_and_the_download_leads_back(
    organization: Organization,
) -> None:
    run = drive(start(organization))
    dataset_storage().delete(run.dataset_path)
    client = staff_client("view_trainingrun", "download_dataset")
    page = client.get(page_of(run)).content.decode()
    assert f"The file {run.dataset_path} is missing from the dataset storage" in page
    response = client.get(download_of(run), follow=True)
    assert response.redirect_chain == [(page_of(run), 302)]
    assert "it cannot be downloaded" in response.content.decode()


def test_a_run_without_a_validation_file_answers_404_for_it(organization: Organization) -> None:
    run = drive(start(organization))
    client = staff_client("view_trainingrun", "download_dataset")
    assert client.get(download_of(run, "validation")).status_code == 404
    assert client.get(download_of(run, "other")).status_code == 404
