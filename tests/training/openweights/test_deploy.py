"""Deploying an open-weights model loads its adapter into vLLM first; taking its traffic away unloads it.

The registry's deploy API, admin and commands drive a stateful stand-in of vLLM's server over
HTTP; agents then call it with the official ``openai`` client where ``/api/route`` says.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from registry.models import RegisteredModel
from registry.services import model_register
from tests.api_clients import Tenant, assert_error
from tests.factories import UserFactory
from tests.registry.factories import pool_traffic
from tests.training.openweights.vllm_standin import StandIn
from training.providers.openweights import artifacts

pytestmark = pytest.mark.django_db
LOAD, UNLOAD = "/v1/load_lora_adapter", "/v1/unload_lora_adapter"
Status = RegisteredModel.Status
Serving = RegisteredModel.ServingStatus
CHANGELIST = reverse("admin:registry_registeredmodel_changelist")


@pytest.fixture
def vllm(settings: Any) -> Iterator[StandIn]:
    standin = StandIn().start()
    settings.OPENWEIGHTS_SERVING_URL = standin.base_url
    yield standin
    standin.stop()


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks: Callable[..., Any]) -> Callable[[], Any]:
    """Run the after-commit work (unloads) of what happens inside, as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def adapter_model(tenant: Tenant, tmp_path: Path, version: str) -> RegisteredModel:
    """An open-weights model of ``tenant``'s pool whose adapter is in storage, registered ready."""
    model_id = artifacts.model_id_for(tenant.organization.slug, version)
    source = tmp_path / model_id
    source.mkdir()
    (source / "adapter_config.json").write_text('{"r": 8}', encoding="utf-8")
    (source / "adapter_model.safetensors").write_bytes(version.encode())
    manifest = artifacts.adapter_store(
        source, model_id, {"base_model_name": "tiny", "base_model_config_sha256": "c" * 64}
    )
    return model_register(
        model_id=model_id,
        model_version=version,
        base_model="tiny",
        organization=tenant.organization,
        provider="openweights",
        adapter_sha256=manifest["sha256"],
        base_model_config_sha256="c" * 64,
    )


def deploy(tenant: Tenant, model: RegisteredModel, **body: Any) -> Any:
    return tenant.ops.post(f"/training/deploy/{model.pk}", body, format="json")


def staff(client: Client) -> Client:
    user = UserFactory.create(is_staff=True)
    codenames = ["view_registeredmodel", "change_registeredmodel", "deploy_model"]
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="registry", codename__in=codenames))
    client.force_login(user)
    return client


def archive_in_admin(client: Client, model: RegisteredModel) -> Any:
    data = {"action": "archive", "confirm_step": "1", "apply": "yes", ACTION_CHECKBOX_NAME: [str(model.pk)]}
    return client.post(CHANGELIST, data)


def test_deploying_loads_the_adapter_into_the_server_before_the_model_takes_traffic(
    tenant: Tenant, vllm: StandIn, tmp_path: Path
) -> None:
    model = adapter_model(tenant, tmp_path, "v1.0.0")
    response = deploy(tenant, model)
    assert response.status_code == 200, response.json()
    assert response.json()["serving_status"] == "loaded"
    assert vllm.adapters == {model.model_id: str(artifacts.adapter_local_dir(model.model_id))}
    assert pool_traffic(tenant.organization) == {"v1.0.0": 100.0}


def test_a_deploy_retried_after_the_adapter_was_already_loaded_succeeds(
    tenant: Tenant, vllm: StandIn, tmp_path: Path
) -> None:
    model = adapter_model(tenant, tmp_path, "v1.0.0")
    vllm.load({"lora_name": model.model_id, "lora_path": str(artifacts.adapter_local_dir(model.model_id))})
    response = deploy(tenant, model)
    assert response.status_code == 200, response.json()
    assert [path for path, _ in vllm.requests] == [LOAD, "/v1/models"]  # a 400, then "it is loaded"
    assert list(vllm.adapters) == [model.model_id]


@pytest.mark.parametrize(
    "body", [{"traffic_percentage": 100}, {"traffic_percentage": 10, "ab_test_group": "variant_a"}]
)
def test_a_load_the_server_refuses_refuses_the_deploy_and_leaves_traffic_unchanged(
    tenant: Tenant, vllm: StandIn, tmp_path: Path, body: dict[str, Any]
) -> None:
    control = adapter_model(tenant, tmp_path, "v1.0.0")
    assert deploy(tenant, control).status_code == 200
    candidate = adapter_model(tenant, tmp_path, "v2.0.0")
    vllm.faults[LOAD] = 400
    error = assert_error(deploy(tenant, candidate, **body), 502, "adapter_load_failed")
    assert "v2.0.0 cannot take traffic" in error["message"] and "overloaded" in error["message"]
    assert pool_traffic(tenant.organization) == {"v1.0.0": 100.0}
    candidate.refresh_from_db()
    assert (candidate.status, candidate.serving_status) == (Status.READY, "")
    assert list(vllm.adapters) == [control.model_id]
    assert not candidate.events.exclude(action="registered").exists()


def test_an_unreachable_server_refuses_the_deploy_as_unavailable(tenant: Tenant, settings: Any, tmp_path: Path) -> None:
    settings.OPENWEIGHTS_SERVING_URL = "http://127.0.0.1:9/v1"
    settings.OPENWEIGHTS_SERVING_TIMEOUT = 2
    model = adapter_model(tenant, tmp_path, "v1.0.0")
    assert_error(deploy(tenant, model), 503, "serving_unavailable")
    assert pool_traffic(tenant.organization) == {}


def test_archiving_unloads_the_adapter_once_the_archive_has_committed(
    tenant: Tenant, vllm: StandIn, tmp_path: Path, client: Client, on_commit: Callable[[], Any]
) -> None:
    model = adapter_model(tenant, tmp_path, "v1.0.0")
    deploy(tenant, model)
    with on_commit() as callbacks:
        archive_in_admin(staff(client), model)
        assert model.model_id in vllm.adapters  # not while the archive's transaction is open
    assert len(callbacks) == 1
    model.refresh_from_db()
    assert (model.status, model.serving_status) == (Status.ARCHIVED, Serving.UNLOADED)
    assert vllm.adapters == {}


def test_a_model_replaced_at_full_traffic_is_unloaded_and_its_successor_loaded(
    tenant: Tenant, vllm: StandIn, tmp_path: Path, on_commit: Callable[[], Any]
) -> None:
    first, second = adapter_model(tenant, tmp_path, "v1.0.0"), adapter_model(tenant, tmp_path, "v2.0.0")
    deploy(tenant, first)
    with on_commit():
        assert deploy(tenant, second).status_code == 200
    assert list(vllm.adapters) == [second.model_id]


def test_a_failed_unload_keeps_the_archive_is_recorded_and_sync_serving_retries_it(
    tenant: Tenant, vllm: StandIn, tmp_path: Path, client: Client, on_commit: Callable[[], Any]
) -> None:
    model = adapter_model(tenant, tmp_path, "v1.0.0")
    deploy(tenant, model)
    vllm.faults[UNLOAD] = 400
    with on_commit():
        response = archive_in_admin(staff(client), model)
    assert response.status_code == 302
    model.refresh_from_db()
    assert (model.status, model.serving_status) == (Status.ARCHIVED, Serving.UNLOAD_FAILED)
    assert "overloaded" in model.serving_error
    with pytest.raises(CommandError, match="1 failed"):
        call_command("sync_serving")
    del vllm.faults[UNLOAD]
    call_command("sync_serving")
    model.refresh_from_db()
    assert (model.serving_status, model.serving_error, vllm.adapters) == (Serving.UNLOADED, "", {})


def test_sync_serving_loads_the_deployed_adapters_a_restarted_server_forgot(
    tenant: Tenant, vllm: StandIn, tmp_path: Path
) -> None:
    model = adapter_model(tenant, tmp_path, "v1.0.0")
    deploy(tenant, model)
    vllm.adapters.clear()  # the server restarted
    call_command("sync_serving", organization=tenant.organization.slug)
    assert list(vllm.adapters) == [model.model_id]


def test_a_rollback_loads_the_model_it_brings_back_and_unloads_the_one_it_takes_out(
    tenant: Tenant, vllm: StandIn, tmp_path: Path, on_commit: Callable[[], Any]
) -> None:
    first, second = adapter_model(tenant, tmp_path, "v1.0.0"), adapter_model(tenant, tmp_path, "v2.0.0")
    deploy(tenant, first)
    with on_commit():
        deploy(tenant, second)
    with on_commit():
        call_command("rollback_model", organization=tenant.organization.slug)
    assert pool_traffic(tenant.organization) == {"v1.0.0": 100.0}
    assert list(vllm.adapters) == [first.model_id]


def test_previewing_a_deploy_in_the_admin_loads_nothing(
    tenant: Tenant, vllm: StandIn, tmp_path: Path, client: Client
) -> None:
    model = adapter_model(tenant, tmp_path, "v1.0.0")
    data = {"action": "deploy_at_full_traffic", "index": "0", ACTION_CHECKBOX_NAME: [str(model.pk)]}
    assert staff(client).post(CHANGELIST, data).status_code == 200
    assert vllm.requests == []


def test_the_route_names_the_adapter_and_the_server_and_the_openai_client_gets_an_answer_there(
    tenant: Tenant, vllm: StandIn, tmp_path: Path
) -> None:
    model = adapter_model(tenant, tmp_path, "v1.0.0")
    deploy(tenant, model)
    route = tenant.agent.get("/api/route", {"lead": "lead-7"}).json()
    assert (route["model"], route["base_url"]) == (model.model_id, vllm.base_url)
    agent = openai.OpenAI(base_url=route["base_url"], api_key="EMPTY", max_retries=0)
    messages: Any = [{"role": "user", "content": "Write a message for: Industry=SaaS"}]
    completion = agent.chat.completions.create(model=route["model"], messages=messages)
    assert completion.choices[0].message.content == f"Subject: from {model.model_id}"


@pytest.mark.parametrize(
    ("configured", "expected"), [("", "https://api.openai.com/v1"), ("http://gw/v1/", "http://gw/v1")]
)
def test_the_route_of_an_openai_model_names_openais_base_url(
    tenant: Tenant, settings: Any, configured: str, expected: str
) -> None:
    settings.OPENAI_BASE_URL = configured
    model = model_register(
        model_id="ft:gpt-4o-mini:acme:v1",
        model_version="v1.0.0",
        base_model="gpt-4o-mini",
        organization=tenant.organization,
        provider="openai",
    )
    assert deploy(tenant, model).status_code == 200
    route = tenant.agent.get("/api/route").json()
    assert (route["model"], route["base_url"]) == ("ft:gpt-4o-mini:acme:v1", expected)


def test_the_registry_row_and_the_models_api_carry_the_adapter_sha256_and_base_config_hash(
    tenant: Tenant, tmp_path: Path
) -> None:
    model = adapter_model(tenant, tmp_path, "v1.0.0")
    row = tenant.ops.get("/training/models").json()["models"][0]
    expected_sha = artifacts.adapter_manifest(model.model_id)["sha256"]
    assert (row["adapter_sha256"], row["base_model_config_sha256"]) == (expected_sha, "c" * 64)
    assert len(expected_sha) == 64


def test_a_refused_load_shows_the_servers_words_in_the_admin_and_deploys_nothing(
    tenant: Tenant, vllm: StandIn, tmp_path: Path, client: Client
) -> None:
    model = adapter_model(tenant, tmp_path, "v1.0.0")
    vllm.faults[LOAD] = 400
    data = {"action": "deploy_at_full_traffic", "previewed": "", ACTION_CHECKBOX_NAME: [str(model.pk)]}
    response = staff(client).post(CHANGELIST, {**data, "confirm_step": "1", "apply": "yes"})
    (message,) = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith("Deploy at 100 %: v1.0.0 cannot take traffic") and "overloaded" in message
    assert pool_traffic(tenant.organization) == {}
