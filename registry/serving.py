"""Where each provider's models are served, and how a model is loaded into and out of its server.

The registry sits below the app that trains, so it cannot ask a provider itself: an app above it
registers a :class:`Serving` per provider name (``training`` does so in its ``AppConfig.ready``),
and the registry's services look it up by the model row's ``provider``. A provider without an
entry, or one whose ``load`` is ``None`` (``openai``, ``local``), has no load step; one whose
``complete`` is ``None`` cannot be asked a prompt from the model's admin page ("Try this model").
"""

from collections.abc import Callable
from dataclasses import dataclass

from rest_framework import status

from flywheel.errors import ApplicationError


@dataclass(frozen=True)
class Serving:
    """How a provider's models are called and (for adapter servers) loaded and unloaded.

    ``base_url`` returns the OpenAI-compatible base URL agents call (``None``: no server agents
    can call). ``load`` and ``unload`` take the model's ``model_id`` and return whether a server
    was there to act on (``False``: none is configured, answers come from elsewhere); they raise
    an ``ApplicationError`` on failure, and count a repeated call as success. ``complete`` takes
    ``(model_id, system_prompt, user_prompt)`` and returns the model's answer, raising an
    ``ApplicationError`` with the provider's words when it cannot.
    """

    base_url: Callable[[], str | None]
    load: Callable[[str], bool] | None = None
    unload: Callable[[str], bool] | None = None
    complete: Callable[[str, str, str], str] | None = None


class AdapterLoadFailed(ApplicationError):
    """The serving server did not load a model's adapter, so the model cannot take traffic."""

    code = "adapter_load_failed"
    status_code: int = status.HTTP_502_BAD_GATEWAY


class ServingUnavailable(AdapterLoadFailed):
    """No serving server could be reached to load the adapter (a fault that may pass)."""

    code = "serving_unavailable"
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


class CompletionUnavailable(ApplicationError):
    """No provider registered in this process can answer a prompt for the model's provider."""

    code = "completion_unavailable"
    status_code: int = status.HTTP_409_CONFLICT


_servings: dict[str, Serving] = {}


def serving_register(provider: str, serving: Serving) -> None:
    """Say how the models of ``provider`` are served (called once per process, at start-up)."""
    _servings[provider] = serving


def serving_for(provider: str) -> Serving | None:
    return _servings.get(provider)


def serving_base_url(provider: str) -> str | None:
    """The base URL an agent calls a model of ``provider`` at; ``None`` when there is none."""
    serving = _servings.get(provider)
    return serving.base_url() if serving is not None else None


def loading_providers() -> list[str]:
    """The providers whose models are loaded into a server before they take traffic."""
    return [name for name, serving in _servings.items() if serving.load is not None]


def serving_can_complete(provider: str) -> bool:
    """Whether a prompt can be put to the models of ``provider`` from this process."""
    serving = _servings.get(provider)
    return serving is not None and serving.complete is not None


def serving_complete(*, provider: str, model_id: str, system_prompt: str, user_prompt: str) -> str:
    """The answer of the model ``model_id`` of ``provider`` to one prompt (the seed's ``test_model``).

    Raises :class:`CompletionUnavailable` when no provider can answer, and the provider's own
    ``ApplicationError`` when it fails.
    """
    serving = _servings.get(provider)
    if serving is None or serving.complete is None:
        raise CompletionUnavailable(f"No provider named {provider!r} can answer prompts here.")
    return serving.complete(model_id, system_prompt, user_prompt)
