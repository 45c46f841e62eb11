"""The ``openweights`` fine-tuning provider: LoRA adapters trained with TRL, served by vLLM.

See :mod:`training.providers.openweights.provider`; the trainer it runs is
:mod:`training.openweights.train`.
"""

from training.providers.openweights.provider import OpenWeightsProvider

__all__ = ["OpenWeightsProvider"]
