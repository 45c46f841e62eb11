"""Answering with an adapter: through a vLLM server, or in this process with transformers + PEFT.

With ``OPENWEIGHTS_SERVING_URL`` (vLLM's OpenAI-compatible base URL, ``.../v1``, started with
``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) adapters are loaded and unloaded
at run time and chat completions name the adapter as their model, through the official ``openai``
client. Without it, :func:`generate_locally` loads the base model and the adapter here and
decodes greedily: slow, meant for small models and tests.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
from django.conf import settings

from training.providers.base import ProviderError

BAD_REQUEST = 400
_local_lock = threading.Lock()
_local_cache: dict[tuple[str, str], tuple[Any, Any]] = {}


def serving_url() -> str:
    return str(getattr(settings, "OPENWEIGHTS_SERVING_URL", "") or "").rstrip("/")


def max_new_tokens() -> int:
    return int(getattr(settings, "OPENWEIGHTS_MAX_NEW_TOKENS", 256))


@contextmanager
def serving_errors(what: str) -> Iterator[None]:
    """Turn the client's failures into ``ProviderError`` (lost connections and 5xx are retryable)."""
    try:
        yield
    except openai.APIConnectionError as exc:
        raise ProviderError(
            f"Cannot reach the vLLM server to {what}: {exc.message}", code="connection_error", retryable=True
        ) from exc
    except openai.APIStatusError as exc:
        raise ProviderError(
            f"The vLLM server answered {exc.status_code} to {what}: {exc.message}",
            code="serving_error",
            provider_status=exc.status_code,
            retryable=exc.status_code >= 500,
        ) from exc


class VLLMServer:
    """vLLM's OpenAI-compatible server: runtime LoRA loading and chat completions, via ``openai``."""

    def __init__(self, base_url: str, *, api_key: str = "EMPTY", timeout: float = 60.0) -> None:
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=2)

    @classmethod
    def from_settings(cls) -> "VLLMServer":
        return cls(
            serving_url(),
            api_key=str(getattr(settings, "OPENWEIGHTS_SERVING_API_KEY", "") or "EMPTY"),
            timeout=float(getattr(settings, "OPENWEIGHTS_SERVING_TIMEOUT", 60)),
        )

    def loaded(self) -> set[str]:
        """The names the server answers to (its base model and every loaded adapter)."""
        with serving_errors("list its models"):
            return {model.id for model in self.client.models.list()}

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load the adapter; a 400 for a name already loaded counts as success (a retried load)."""
        try:
            with serving_errors(f"load adapter {name}"):
                self.client.post("/load_lora_adapter", body={"lora_name": name, "lora_path": str(path)}, cast_to=str)
        except ProviderError as exc:
            if exc.provider_status == BAD_REQUEST and name in self.loaded():
                return
            raise ProviderError(
                f"The vLLM server refused to load adapter {name}: {exc.message}",
                code="adapter_load_failed",
                provider_status=exc.provider_status,
                retryable=exc.retryable,
            ) from exc

    def unload_adapter(self, name: str) -> None:
        """Unload the adapter; one that is not loaded (any more) counts as unloaded."""
        try:
            with serving_errors(f"unload adapter {name}"):
                self.client.post("/unload_lora_adapter", body={"lora_name": name}, cast_to=str)
        except ProviderError as exc:
            if exc.provider_status is not None and exc.provider_status < 500 and name not in self.loaded():
                return
            raise

    def complete(self, model: str, system_prompt: str, user_prompt: str) -> str:
        """Greedy chat completion with the adapter ``model``."""
        messages: Any = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user_prompt}]
        with serving_errors(f"answer with {model}"):
            completion = self.client.chat.completions.create(
                model=model, messages=messages, temperature=0, max_tokens=max_new_tokens()
            )
        if not completion.choices:
            raise ProviderError(f"The vLLM server returned no completion for {model}.", code="empty_completion")
        return completion.choices[0].message.content or ""


def local_model(base_model: str, adapter_dir: Path, revision: str) -> tuple[Any, Any]:
    """The base model with the adapter applied, and its tokenizer; the last pair stays cached."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    key = (base_model, f"{adapter_dir}@{revision}")
    if key not in _local_cache:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), str(adapter_dir))
        _local_cache.clear()
        _local_cache[key] = (model.eval(), tokenizer)
    return _local_cache[key]


def generate_locally(base_model: str, adapter: Path, revision: str, system_prompt: str, user_prompt: str) -> str:
    """Greedy decoding with transformers + PEFT in this process (``revision``: the adapter's sha256)."""
    import torch

    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user_prompt}]
    with _local_lock:
        model, tokenizer = local_model(base_model, adapter, revision)
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            output = model.generate(
                **inputs, do_sample=False, max_new_tokens=max_new_tokens(), pad_token_id=tokenizer.pad_token_id
            )
    new_tokens = output[0][inputs["input_ids"].shape[1] :]
    return str(tokenizer.decode(new_tokens, skip_special_tokens=True))
