"""The open-weights trainer: LoRA adapters trained with TRL and PEFT, run as a subprocess.

``python -m training.openweights.train --config run.json`` trains one adapter (``sft``, ``dpo``
or ``kto``) and writes its status, loss events, checkpoints, heartbeat and final adapter into the
run's output directory. Nothing here imports Django: the provider
(:mod:`training.providers.openweights`) reads those files.
"""
