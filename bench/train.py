"""Training tokens per second on CPU: the open-weights trainer against a plain PyTorch loop.

Usage: python bench/train.py [--examples 256] [--batch-size 8] [--rounds 5] [--threads 1] [--model DIR]

It builds the tiny random model (two layers, hidden size 32; or uses ``--model``) and an SFT
dataset in a temporary directory, then alternates two runs per round, each over the same model
and the same batches for one epoch:

- ``trainer``: the trainer's entry point (``training.openweights.train.main``), LoRA + TRL's
  SFTTrainer with everything Flywheel runs (assistant-only loss, a loss event per step, the
  heartbeat, the epoch checkpoint, the final adapter); timed around ``Trainer.train`` as the
  trainer itself reports it, so model loading is left out;
- ``plain``: the floor without Trainer overhead: the same LoRA model and AdamW, over the batches
  the trainer's own data loader produced, forward, backward and step, nothing else.

Tokens are the batches' non-padding tokens. It prints the medians of the rounds and their ratio
against the target, with PASS/FAIL, and exits 0 only on PASS. Nothing is downloaded.

The target, the trainer's steps at >= 0.4x the plain loop's tokens/s, is what TRL leaves room
for on a two-layer model: its SFT loss goes through a chunked log-probability kernel that also
computes each token's entropy and top-1 accuracy (the checkpoints' mean token accuracy), which
costs about as much as the model itself at this size; per-step costs (gradient clipping, the
scheduler, a log line per step) come on top. The gap is proportional to tokens, not to steps
(batch 16 gives the same ratio as batch 8), and shrinks as the model grows.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 0.4
AIM = 0.8


def dataset(path: Path, count: int) -> Path:
    """An SFT dataset of ``count`` sales examples in the exporter's format."""
    from training.openweights.tiny import sales_corpus

    lines = list(sales_corpus(count))
    rows = [
        {
            "messages": [
                {"role": "system", "content": "You write sales emails."},
                {"role": "user", "content": lines[2 * i]},
                {"role": "assistant", "content": lines[2 * i + 1]},
            ]
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def config(model: Path, data: Path, output: Path, batch_size: int) -> dict[str, Any]:
    return {
        "base_model": str(model),
        "method": "sft",
        "train_file": str(data),
        "output_dir": str(output),
        "n_epochs": 1,
        "batch_size": batch_size,
        "learning_rate": 1e-3,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
    }


def run_trainer(values: dict[str, Any], work: Path, round_number: int) -> tuple[int, float, float]:
    """One epoch through the trainer's entry point: trained tokens, seconds of its steps, of ``train()``."""
    from training.openweights.files import RunFiles, read_json
    from training.openweights.train import main

    output = work / f"trainer-{round_number}"
    path = work / f"run-{round_number}.json"
    path.write_text(json.dumps({**values, "output_dir": str(output)}), encoding="utf-8")
    if main(["--config", str(path)]) != 0:
        raise SystemExit(f"the trainer failed: {read_json(RunFiles(output).status).get('error')}")
    status = read_json(RunFiles(output).status)
    return int(status["trained_tokens"]), float(status["loop_seconds"]), float(status["train_seconds"])


def trainer_batches(values: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """The batches the trainer's own data loader yields for one epoch."""
    from training.openweights.callbacks import ProgressCallback
    from training.openweights.config import RunConfig
    from training.openweights.files import RunFiles
    from training.openweights.train import build_trainer

    run = RunConfig.from_mapping({**values, "output_dir": str(work / "batches")})
    files = RunFiles(run.output_dir)
    trainer, _ = build_trainer(run, files, ProgressCallback(files))
    return [dict(batch) for batch in trainer.get_train_dataloader()]


def run_plain(values: dict[str, Any], batches: list[dict[str, Any]]) -> tuple[int, float]:
    """The same steps in a plain loop over a fresh LoRA model; (tokens, seconds)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    set_seed(42)
    lora = values["lora"]
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(values["base_model"], dtype=torch.float32),
        LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=0.0, target_modules="all-linear"),
    ).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=values["learning_rate"])
    tokens = sum(int(batch["attention_mask"].sum()) for batch in batches)
    started = time.perf_counter()
    for batch in batches:
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return tokens, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (one suits the tiny model)")
    parser.add_argument("--model", type=Path, help="a base model directory (default: build the tiny one)")
    args = parser.parse_args()
    import torch

    from training.openweights.tiny import build_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        work = Path(scratch)
        model = args.model or build_model(work / "model")
        values = config(model, dataset(work / "sft.jsonl", args.examples), work, args.batch_size)
        batches = trainer_batches(values, work)
        rates: dict[str, list[float]] = {"trainer": [], "trainer_total": [], "plain": []}
        for number in range(args.rounds):
            tokens, loop, total = run_trainer(values, work, number)
            plain_tokens, plain_seconds = run_plain(values, batches)
            rates["trainer"].append(tokens / loop)
            rates["trainer_total"].append(tokens / total)
            rates["plain"].append(plain_tokens / plain_seconds)
            print(
                f"round {number + 1}: trainer {tokens} tokens, steps {loop:.3f} s, train() {total:.3f} s; "
                f"plain {plain_tokens} tokens in {plain_seconds:.3f} s"
            )
    return report(rates, len(batches), args.threads)


def report(rates: dict[str, list[float]], steps: int, threads: int) -> int:
    trainer, plain = statistics.median(rates["trainer"]), statistics.median(rates["plain"])
    total = statistics.median(rates["trainer_total"])
    ratio = trainer / plain
    print(f"\n{steps} steps per round, {len(rates['trainer'])} rounds, {threads} thread(s), medians:")
    print(f"trainer (its steps):               {trainer:,.0f} tokens/s")
    print(f"trainer (all of train(), with the epoch checkpoint and teardown): {total:,.0f} tokens/s")
    print(f"plain loop:                        {plain:,.0f} tokens/s")
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"trainer / plain: {ratio:.2f}x (target >= {TARGET}x, aim {AIM}x): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
