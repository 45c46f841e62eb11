"""Adapters go in and out of a vLLM server, and answers come from it by the adapter's name."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.training.openweights.vllm_standin import StandIn
from training.providers import ProviderError, get_provider
from training.providers.openweights import artifacts


@pytest.fixture
def vllm(openweights: Any) -> Iterator[StandIn]:
    standin = StandIn().start()
    openweights.OPENWEIGHTS_SERVING_URL = standin.base_url
    yield standin
    standin.stop()


def stored_adapter(tmp_path: Path, model_id: str = "acme--v1-0-0") -> str:
    """Store adapter files (their bytes do not matter to the server stand-in) under ``model_id``."""
    source = tmp_path / "adapter"
    source.mkdir()
    (source / "adapter_config.json").write_text('{"r": 8}', encoding="utf-8")
    (source / "adapter_model.safetensors").write_bytes(b"weights")
    artifacts.adapter_store(source, model_id, {"base_model": "tiny"})
    return model_id


def test_loading_an_adapter_twice_counts_as_loaded_and_unloading_twice_as_unloaded(
    vllm: StandIn, tmp_path: Path
) -> None:
    provider: Any = get_provider("openweights")
    model_id = stored_adapter(tmp_path)
    provider.load_adapter(model_id)
    provider.load_adapter(model_id)  # vLLM answers 400 to the second load: a retried deploy
    assert list(vllm.adapters) == [model_id]
    assert Path(vllm.adapters[model_id], "adapter_model.safetensors").read_bytes() == b"weights"
    provider.unload_adapter(model_id)
    provider.unload_adapter(model_id)
    assert vllm.adapters == {}


def test_a_load_the_server_refuses_for_another_reason_is_an_error(vllm: StandIn, tmp_path: Path) -> None:
    server = get_provider("openweights").serving_server()  # type: ignore[attr-defined]
    with pytest.raises(ProviderError, match="refused to load adapter"):
        server.load_adapter("acme--v9", tmp_path / "missing")


def test_complete_asks_the_server_with_the_adapter_name_as_the_model(vllm: StandIn, tmp_path: Path) -> None:
    provider: Any = get_provider("openweights")
    model_id = stored_adapter(tmp_path)
    provider.load_adapter(model_id)
    assert provider.complete(model_id, "system", "Write a message") == f"Subject: from {model_id}"
    path, body = vllm.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["model"] == model_id
    assert body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


def test_an_unreachable_server_is_a_retryable_provider_error(openweights: Any, tmp_path: Path) -> None:
    openweights.OPENWEIGHTS_SERVING_URL = "http://127.0.0.1:9/v1"
    openweights.OPENWEIGHTS_SERVING_TIMEOUT = 2
    with pytest.raises(ProviderError) as raised:
        get_provider("openweights").unload_adapter("acme--v1")  # type: ignore[attr-defined]
    assert raised.value.retryable


def test_loading_needs_a_serving_url(openweights: Any, tmp_path: Path) -> None:
    model_id = stored_adapter(tmp_path)
    with pytest.raises(ProviderError, match="OPENWEIGHTS_SERVING_URL") as raised:
        get_provider("openweights").load_adapter(model_id)  # type: ignore[attr-defined]
    assert raised.value.status_code == 400
