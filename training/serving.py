"""How the registry serves the models each provider trains: base URLs for agents, adapter loading.

The registry cannot import the providers (it sits below this app), so :func:`register_servings`
tells it, once per process from ``TrainingConfig.ready``: ``openweights`` adapters are loaded
into and unloaded from the vLLM server at ``OPENWEIGHTS_SERVING_URL`` (no server configured: no
load step, answers come from this process); ``openai`` models are called at ``OPENAI_BASE_URL``
or OpenAI's own API, with no load step; ``local`` models have no server agents can call. Every
provider answers a prompt through its ``complete`` (the model admin's "Try this model").
"""

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from registry.serving import Serving, serving_register
from training.providers import ProviderError, get_provider

OPENAI_API_BASE_URL = "https://api.openai.com/v1"


def openai_base_url() -> str:
    return str(getattr(settings, "OPENAI_BASE_URL", "") or "").rstrip("/") or OPENAI_API_BASE_URL


def openweights_base_url() -> str | None:
    """``OPENWEIGHTS_SERVING_URL`` (vLLM's ``.../v1``); read here so that start-up imports no client."""
    return str(getattr(settings, "OPENWEIGHTS_SERVING_URL", "") or "").rstrip("/") or None


def openweights_load(model_id: str) -> bool:
    """Load the adapter into the vLLM server; ``False`` when no server is configured."""
    if openweights_base_url() is None:
        return False
    get_provider("openweights").load_adapter(model_id)  # type: ignore[attr-defined]
    return True


def openweights_unload(model_id: str) -> bool:
    """Unload the adapter from the vLLM server; ``False`` when no server is configured."""
    if openweights_base_url() is None:
        return False
    get_provider("openweights").unload_adapter(model_id)  # type: ignore[attr-defined]
    return True


def provider_complete(name: str) -> Callable[[str, str, str], str]:
    """The provider ``name``'s ``complete``, with a provider that is not configured as a ``ProviderError``."""

    def complete(model_id: str, system_prompt: str, user_prompt: str) -> str:
        try:
            provider = get_provider(name)
        except ImproperlyConfigured as exc:
            raise ProviderError(str(exc), code="not_configured") from exc
        return provider.complete(model_id, system_prompt, user_prompt)

    return complete


def no_base_url() -> None:
    return None


def register_servings() -> None:
    serving_register(
        "openweights",
        Serving(
            openweights_base_url,
            load=openweights_load,
            unload=openweights_unload,
            complete=provider_complete("openweights"),
        ),
    )
    serving_register("openai", Serving(openai_base_url, complete=provider_complete("openai")))
    serving_register("local", Serving(no_base_url, complete=provider_complete("local")))
