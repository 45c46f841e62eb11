"""The trainer itself, in this process: SFT on assistant tokens, DPO and KTO move the model the right way."""

import contextlib
from pathlib import Path
from typing import Any

import pytest

from tests.training.openweights.examples import BAD, GOOD, dpo_lines, kto_lines, prompt, sft_lines, write_jsonl
from training.openweights.callbacks import ProgressCallback
from training.openweights.config import LoraSettings, RunConfig
from training.openweights.files import RunFiles, read_lines
from training.openweights.train import build_trainer

torch = pytest.importorskip("torch")


def run_config(tiny_model: Path, tmp_path: Path, method: str, lines: list[dict[str, Any]], **extra: Any) -> RunConfig:
    values: dict[str, Any] = {
        "base_model": str(tiny_model),
        "method": method,
        "train_file": str(write_jsonl(tmp_path / f"{method}.jsonl", lines)),
        "output_dir": str(tmp_path / "run"),
        "n_epochs": 3,
        "batch_size": 4,
        "learning_rate": 0.01,
        "lora": LoraSettings(r=8, alpha=16, dropout=0.0),
        **extra,
    }
    return RunConfig(**values)


def trained(config: RunConfig) -> Any:
    """Train through the trainer's own builder and callback; return the trainer."""
    files = RunFiles(config.output_dir)
    trainer, _ = build_trainer(config, files, ProgressCallback(files))
    trainer.train()
    return trainer


def completion_logp(model: Any, tokenizer: Any, messages: list[dict[str, str]], text: str) -> float:
    """log p(text + end of turn | the chat prompt), summed over the completion's tokens."""
    prompt_text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    logps = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logps[len(prompt_ids) - 1 :].sum())


def margin(trainer: Any, *, adapter: bool) -> float:
    """Mean over four prompts of log p(GOOD) - log p(BAD), with the adapter on or off."""
    model, tokenizer = trainer.model.eval(), trainer.processing_class
    values = []
    for index in range(4):
        with contextlib.nullcontext() if adapter else model.disable_adapter():
            good = completion_logp(model, tokenizer, prompt(index), GOOD)
            bad = completion_logp(model, tokenizer, prompt(index), BAD)
        values.append(good - bad)
    return sum(values) / len(values)


def test_sft_loss_falls_over_the_epochs_and_each_epoch_is_a_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    config = run_config(tiny_model, tmp_path, "sft", sft_lines())
    trained(config)
    files = RunFiles(config.output_dir)
    losses = [
        event["metrics"]["loss"]
        for event in read_lines(files.events)
        if "metrics" in event and "loss" in event["metrics"]
    ]
    checkpoints = read_lines(files.checkpoints)
    assert len(losses) == 12
    assert losses[-1] < losses[0]
    assert [row["epoch"] for row in checkpoints] == [1.0, 2.0, 3.0]
    assert checkpoints[-1]["train_loss"] < checkpoints[0]["train_loss"]
    assert checkpoints[-1]["train_mean_token_accuracy"] >= checkpoints[0]["train_mean_token_accuracy"]


def test_sft_labels_only_the_assistant_tokens(tiny_model: Path, tmp_path: Path) -> None:
    config = run_config(tiny_model, tmp_path, "sft", sft_lines(4))
    files = RunFiles(config.output_dir)
    trainer, _ = build_trainer(config, files, ProgressCallback(files))
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labelled = batch["input_ids"][0][batch["labels"][0] != -100]
    tokenizer = trainer.processing_class
    assert tokenizer.decode(labelled) == GOOD + tokenizer.eos_token
    assert "Write a message" in tokenizer.decode(batch["input_ids"][0])


def test_the_saved_adapter_reloads_with_identical_logits(tiny_model: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = run_config(tiny_model, tmp_path, "sft", sft_lines(8), n_epochs=1)
    trainer = trained(config)
    trainer.save_model(str(tmp_path / "adapter"))
    ids = trainer.processing_class(GOOD, return_tensors="pt")["input_ids"]
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(tmp_path / "adapter"))
    with torch.no_grad():
        expected = trainer.model.eval()(input_ids=ids).logits
        actual = reloaded.eval()(input_ids=ids).logits
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    assert torch.equal(expected, actual)


def test_dpo_raises_the_preferred_over_the_rejected_log_probability(tiny_model: Path, tmp_path: Path) -> None:
    trainer = trained(run_config(tiny_model, tmp_path, "dpo", dpo_lines(), n_epochs=2))
    assert margin(trainer, adapter=True) > margin(trainer, adapter=False) + 0.5


def test_kto_raises_desirable_completions_relative_to_undesirable_ones(tiny_model: Path, tmp_path: Path) -> None:
    trainer = trained(run_config(tiny_model, tmp_path, "kto", kto_lines(), n_epochs=2))
    assert margin(trainer, adapter=True) > margin(trainer, adapter=False) + 0.5
