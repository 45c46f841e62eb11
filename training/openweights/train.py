"""The trainer's entry point: ``python -m training.openweights.train --config run.json``.

It loads the base model from a local directory, wraps it in a LoRA adapter (PEFT) and trains it
with TRL's trainer for the run's method (SFT with the loss on assistant tokens only, DPO on pairs,
KTO on unpaired desirable and undesirable completions). It beats a heartbeat from start to end,
writes loss events and per-epoch checkpoints (resumable: adapter, optimizer, scheduler and random
state), saves the final adapter, and leaves the status "trained" (the provider turns that into
"succeeded" once the adapter is stored) or "failed". With ``resume_from_checkpoint`` it goes on
from that checkpoint where a killed trainer left off.
Run it under ``accelerate launch -m training.openweights.train`` for several GPUs.
"""

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from training.openweights.config import Resolved, RunConfig, resolve
from training.openweights.data import read_rows
from training.openweights.files import Heartbeat, RunFiles, read_lines


def is_main_process() -> bool:
    """True on the process that writes files (rank 0, or the only one)."""
    return os.environ.get("RANK", "0") == "0"


def torch_dtype(name: str) -> Any:
    """The weights' dtype: bf16 where a GPU supports it when "auto", else float32."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def trainer_arguments(config: RunConfig, resolved: Resolved, has_valid: bool, dtype: Any) -> dict[str, Any]:
    """The ``TrainingArguments`` every method shares."""
    import torch

    return {
        "output_dir": str(RunFiles(config.output_dir).trainer_output),
        "num_train_epochs": resolved.n_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": resolved.batch_size,
        "per_device_eval_batch_size": resolved.batch_size,
        "learning_rate": resolved.learning_rate,
        "logging_strategy": "steps",
        "logging_steps": config.logging_steps,
        "save_strategy": "epoch" if config.save_checkpoints else "no",
        "eval_strategy": "epoch" if has_valid else "no",
        "seed": config.seed,
        "data_seed": config.seed,
        "report_to": "none",
        "disable_tqdm": True,
        "bf16": dtype == torch.bfloat16,
        "gradient_checkpointing": False,
        "max_length": config.max_length,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }


def load_model(config: RunConfig) -> tuple[Any, Any, Any]:
    """Return the base model, its tokenizer (with a pad token) and the dtype it was loaded in."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch_dtype(config.dtype)
    return AutoModelForCausalLM.from_pretrained(config.base_model, dtype=dtype), tokenizer, dtype


def method_trainer(config: RunConfig, resolved: Resolved, arguments: dict[str, Any]) -> tuple[Any, Any]:
    """Return the TRL config and trainer class of the run's method."""
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    if config.method == "sft":
        return SFTConfig(**arguments, assistant_only_loss=True, packing=False), SFTTrainer
    if config.method == "dpo":
        return DPOConfig(**arguments, beta=resolved.beta), DPOTrainer
    return KTOConfig(**arguments, beta=resolved.beta), KTOTrainer


def build_trainer(config: RunConfig, files: RunFiles, callback: Any) -> tuple[Any, int]:
    """Load data, tokenizer and model; return the method's TRL trainer and the example count."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import set_seed

    rows = read_rows(config.train_file, config.method)
    valid = read_rows(config.valid_file, config.method) if config.valid_file else None
    resolved = resolve(config, len(rows))
    set_seed(config.seed)
    model, tokenizer, dtype = load_model(config)
    lora = config.lora
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    args, trainer_class = method_trainer(
        config, resolved, trainer_arguments(config, resolved, valid is not None, dtype)
    )
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(valid) if valid else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
    )
    files.event(
        f"Training {config.method} on {len(rows)} examples: {resolved.n_epochs} epochs, "
        f"batch size {resolved.batch_size}, learning rate {resolved.learning_rate:g}, LoRA rank {lora.r}."
    )
    return trainer, len(rows)


def tokens_at(files: RunFiles, checkpoint: str | None) -> int:
    """The tokens trained up to ``checkpoint``, as its row in the checkpoints file says (0 if none)."""
    rows = [row for row in read_lines(files.checkpoints) if checkpoint and row.get("path") == checkpoint]
    value = rows[-1].get("trained_tokens") if rows else None
    return int(value) if isinstance(value, int | float) else 0


def train(config: RunConfig, files: RunFiles) -> dict[str, Any]:
    """Train (or resume), save the final adapter, and return what the status file records."""
    from training.openweights.callbacks import ProgressCallback

    resume = config.resume_from_checkpoint
    callback = ProgressCallback(files, tokens_before=tokens_at(files, resume))
    trainer, n_examples = build_trainer(config, files, callback)
    files.write_status("running", pid=os.getpid(), examples=n_examples)
    if resume and is_main_process():
        files.event(f"Resuming from {Path(resume).name}: its adapter, optimizer, scheduler and data order.")
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    if is_main_process():
        trainer.save_model(str(files.adapter))
    tokens = callback.trained_tokens or int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0) or None
    return {
        "trained_tokens": tokens,
        "train_loss": result.training_loss,
        "steps": trainer.state.global_step,
        "train_seconds": seconds,
        "loop_seconds": callback.loop_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    """Run one training job from its config file; 0 when the adapter was saved, 1 when it failed."""
    parser = argparse.ArgumentParser(description="Train a LoRA adapter with TRL (sft, dpo or kto).")
    parser.add_argument("--config", required=True, help="the run's JSON config (see RunConfig)")
    config = RunConfig.load(parser.parse_args(argv).config)
    files = RunFiles(config.output_dir)
    if not is_main_process():
        train(config, files)
        return 0
    with Heartbeat(files, config.heartbeat_seconds):
        files.write_status("running", pid=os.getpid())
        try:
            summary = train(config, files)
        except Exception as exc:
            traceback.print_exc()
            files.event(f"Training failed: {type(exc).__name__}: {exc}", level="error")
            files.write_status("failed", error=f"{type(exc).__name__}: {exc}")
            return 1
        files.event("Training finished; the adapter is saved.")
        files.write_status("trained", **summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
