"""Fine-tuning providers, chosen by ``settings.FINE_TUNING_PROVIDER`` like Django's EMAIL_BACKEND.

``get_provider()`` returns the configured provider: "local" (the offline default), "openai",
"openweights", or the dotted path of any ``FineTuningProvider`` subclass.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from training.providers.base import (
    JOB_STATUSES,
    TERMINAL_STATUSES,
    Checkpoint,
    FileInfo,
    FineTuningProvider,
    JobEvent,
    JobInfo,
    ProviderError,
    build_method,
    suffix_for,
)

PROVIDERS = {
    "local": "training.providers.local.LocalProvider",
    "openai": "training.providers.openai.OpenAIProvider",
    "openweights": "training.providers.openweights.provider.OpenWeightsProvider",
}

__all__ = [
    "JOB_STATUSES",
    "PROVIDERS",
    "TERMINAL_STATUSES",
    "Checkpoint",
    "FileInfo",
    "FineTuningProvider",
    "JobEvent",
    "JobInfo",
    "ProviderError",
    "build_method",
    "default_provider_name",
    "get_provider",
    "provider_names",
    "provider_poll_interval",
    "suffix_for",
]


def default_provider_name() -> str:
    """The provider of a pool that chose none: ``FINE_TUNING_PROVIDER``, "local" when unset."""
    return str(getattr(settings, "FINE_TUNING_PROVIDER", "local") or "local")


def provider_names() -> list[str]:
    """The providers a pool may choose: the registered names, and the setting's own value if it is a path."""
    names = sorted(PROVIDERS)
    default = default_provider_name()
    return names if default in names else [*names, default]


def provider_poll_interval(name: str | None = None) -> float:
    """Seconds between two polls of the named provider's jobs.

    ``TRAINING_POLL_INTERVALS[name]`` when set, else the provider class's own ``poll_interval``,
    else ``TRAINING_POLL_INTERVAL``. The class is read, never instantiated (no client is built).
    """
    chosen = name or default_provider_name()
    overrides = getattr(settings, "TRAINING_POLL_INTERVALS", None) or {}
    if chosen in overrides:
        return float(overrides[chosen])
    declared = _provider_class(chosen).poll_interval
    return float(declared if declared is not None else settings.TRAINING_POLL_INTERVAL)


def get_provider(name: str | None = None) -> FineTuningProvider:
    """Return a new instance of the named provider, or of the configured one.

    Modules load lazily so that choosing "local" never imports the openai client, and a typo in
    the setting fails loudly as ImproperlyConfigured rather than as a job that never starts.
    """
    return _provider_class(name or default_provider_name())()


def _provider_class(chosen: str) -> type[FineTuningProvider]:
    """The provider class registered as ``chosen`` (or at that dotted path); ImproperlyConfigured otherwise."""
    path = PROVIDERS.get(chosen, chosen)
    if "." not in path:
        known = ", ".join(sorted(PROVIDERS))
        raise ImproperlyConfigured(f"Unknown fine-tuning provider {chosen!r}: use {known} or a dotted class path.")
    try:
        provider_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"Cannot import fine-tuning provider {path!r}: {exc}") from exc
    if not (isinstance(provider_class, type) and issubclass(provider_class, FineTuningProvider)):
        raise ImproperlyConfigured(f"{path!r} is not a FineTuningProvider subclass.")
    return provider_class
