"""The ``openweights`` fine-tuning provider: LoRA adapters trained with TRL, served by vLLM.

The provider class is :class:`training.providers.openweights.provider.OpenWeightsProvider`; the
trainer it runs is :mod:`training.openweights.train`.
"""
