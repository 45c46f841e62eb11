"""LoRA SFT throughput on an accelerator: Flywheel's trainer entry point against a plain PyTorch loop.

Usage: python bench/gpu_check.py [--tiny] [--seconds 120] [--plain-seconds 15] [--peak-tflops 790]
(``bench/gpu_check.sh`` prints the machine, installs the carried wheels, then runs this.)

It saves a randomly initialised Qwen2 model of Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14
heads, 2 key/value heads, intermediate 4864, vocabulary 151,936; ``--tiny``: the two-layer test
model) in bf16 where the GPU supports it, and an SFT dataset whose every example fills
``--max-length`` tokens (so batches carry no padding). Then, in this order:

- ``plain``: the floor: the same LoRA model (the trainer's own, from ``build_trainer``), AdamW,
  autocast to bf16, over the batches the trainer's data loader yields: forward, backward, step;
- ``trainer``: ``python -m training.openweights.train --config run.json`` as a subprocess, exactly
  as Flywheel's runner starts it, for about ``--seconds`` (its step count is set from the first
  plain round's speed); its tokens/s is read from its own loss events (one per step, with the
  cumulative token count and a timestamp), after the first 5 % of steps (warm-up);
- ``plain`` again, so that the baseline brackets the trainer.

FLOPs. N is the parameters that take part in a matrix product per token: every linear layer of
the base model, the LM head (the tied embedding) included. "MFU" is the usual 6·N·tokens/s over
the peak. For LoRA it overstates the work: the frozen base needs its forward (2·N) and the
gradient with respect to its inputs (2·N) but no weight gradient, so the work done is
(4·N + 6·N_lora)·tokens/s plus causal attention, 6·L·s·d per token (forward 2·L·s·d for the
scores and the weighted sum over s/2 positions on average, backward twice that; L layers,
sequence length s, d = heads times head size). That is printed as "LoRA FLOPs utilisation". The peak
is ``--peak-tflops`` or ``GPU_PEAK_TFLOPS`` (790 by default on a GPU: the bf16 matrix product
measured on an H200; none on CPU). PASS when the trainer reaches ``--target`` times the plain
loop's tokens/s (0.7 on a GPU, 0.4 for the tiny model on CPU, as ``bench/train.py``).
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WARMUP_SHARE = 0.05
PLAIN_WARMUP_STEPS = 3


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the two-layer test model (CPU, about a minute)")
    parser.add_argument("--seconds", type=float, help="the trainer's run (default 120; 12 with --tiny)")
    parser.add_argument("--plain-seconds", type=float, help="each plain round (default 15; 4 with --tiny)")
    parser.add_argument("--batch-size", type=int, help="default 8")
    parser.add_argument("--max-length", type=int, help="tokens per example (default 1024; 128 with --tiny)")
    parser.add_argument("--examples", type=int, help="dataset size, one epoch (default 2048; 256 with --tiny)")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--peak-tflops", type=float, default=float(os.environ.get("GPU_PEAK_TFLOPS", 0) or 0))
    parser.add_argument("--target", type=float, help="trainer / plain tokens/s to PASS (0.7; 0.4 with --tiny)")
    parser.add_argument("--work", type=Path, help="a directory to keep the model and runs in (default: temporary)")
    args = parser.parse_args(argv)
    tiny = args.tiny
    defaults: dict[str, tuple[float, float]] = {
        "seconds": (120, 12),
        "plain_seconds": (15, 4),
        "batch_size": (8, 8),
        "max_length": (1024, 128),
    }
    defaults |= {"examples": (2048, 256), "target": (0.7, 0.4)}
    for name, (full, small) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if tiny else full)
    return args


def long_text(index: int, characters: int) -> str:
    """Sales lines joined until ``characters`` long: an assistant reply that fills the context."""
    from training.openweights.tiny import sales_corpus

    lines, total = [], 0
    for line in sales_corpus(count=4 + characters // 40, seed=index):
        lines.append(line)
        total += len(line) + 1
        if total >= characters:
            break
    return "\n".join(lines)


def write_dataset(path: Path, count: int, max_length: int) -> Path:
    """``count`` SFT examples whose assistant reply is longer than ``max_length`` tokens."""
    rows = []
    for index in range(count):
        messages = [
            {"role": "system", "content": "You write sales emails."},
            {"role": "user", "content": f"Write message {index}."},
            {"role": "assistant", "content": long_text(index, max_length * 6)},
        ]
        rows.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def run_values(args: argparse.Namespace, model: Path, data: Path, output: Path, steps: int) -> dict[str, Any]:
    """The trainer's config: Flywheel's defaults but for the size of the run."""
    steps_per_epoch = max(1, args.examples // args.batch_size)
    return {
        "base_model": str(model),
        "method": "sft",
        "train_file": str(data),
        "output_dir": str(output),
        "n_epochs": max(1, math.ceil(steps / steps_per_epoch)),
        "max_steps": steps,
        "batch_size": args.batch_size,
        "learning_rate": 1e-4,
        "max_length": args.max_length,
        "lora": {"r": args.lora_r, "alpha": 2 * args.lora_r, "dropout": 0.05, "target_modules": "all-linear"},
        "heartbeat_seconds": 10.0,
    }


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """Save the random model and the dataset into ``work``; return their paths."""
    import torch

    from training.openweights.tiny import build_model

    gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    started = time.perf_counter()
    model = build_model(
        work / "model", shape="tiny" if args.tiny else "qwen2.5-0.5b", dtype="bfloat16" if gpu_bf16 else "float32"
    )
    data = write_dataset(work / "sft.jsonl", args.examples, args.max_length)
    print(f"model and dataset ready in {time.perf_counter() - started:.1f} s ({model})", flush=True)
    return model, data


def trainer_and_batches(values: dict[str, Any], work: Path) -> tuple[Any, list[dict[str, Any]]]:
    """The trainer's LoRA model and the batches its data loader yields for one epoch."""
    from training.openweights.callbacks import ProgressCallback
    from training.openweights.config import RunConfig
    from training.openweights.files import RunFiles
    from training.openweights.train import build_trainer

    run = RunConfig.from_mapping({**values, "output_dir": str(work / "batches")})
    files = RunFiles(run.output_dir)
    trainer, _ = build_trainer(run, files, ProgressCallback(files))
    keys = ("input_ids", "attention_mask", "labels")
    batches = [{key: batch[key] for key in keys} for batch in trainer.get_train_dataloader()]
    return trainer.model, batches


class Plain:
    """The plain loop: the trainer's LoRA model, AdamW, autocast, nothing else."""

    def __init__(self, model: Any, batches: list[dict[str, Any]], learning_rate: float) -> None:
        import torch

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).train()
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(parameters, lr=learning_rate, fused=self.device.type == "cuda")
        self.batches = [{key: value.to(self.device) for key, value in batch.items()} for batch in batches]
        self.bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.position = 0

    def step(self) -> int:
        """One step on the next batch; return its tokens."""
        import torch

        batch = self.batches[self.position % len(self.batches)]
        self.position += 1
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum())

    def round(self, seconds: float) -> tuple[int, int, float]:
        """Steps for about ``seconds`` after a short warm-up: (steps, tokens, seconds)."""
        for _ in range(PLAIN_WARMUP_STEPS):
            self.step()
        self.synchronize()
        steps, tokens, started = 0, 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            tokens += self.step()
            steps += 1
        self.synchronize()
        return steps, tokens, time.perf_counter() - started

    def synchronize(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()


def run_trainer(values: dict[str, Any], work: Path) -> dict[str, Any]:
    """The trainer's entry point as Flywheel's runner starts it; its steady tokens/s from its events."""
    from training.openweights.files import RunFiles, read_json, read_lines

    path = work / "run.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    log = work / "trainer.log"
    started = time.perf_counter()
    with log.open("wb") as output:
        command = [sys.executable, "-m", "training.openweights.train", "--config", str(path)]
        code = subprocess.call(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
    wall = time.perf_counter() - started
    files = RunFiles(values["output_dir"])
    status = read_json(files.status)
    if code != 0 or status.get("status") != "trained":
        print(log.read_text(encoding="utf-8", errors="replace")[-3000:])
        raise SystemExit(f"the trainer failed (exit {code}): {status.get('error')}")
    events = [row for row in read_lines(files.events) if "num_tokens" in row.get("metrics", {})]
    first = events[max(1, int(len(events) * WARMUP_SHARE))]
    last = events[-1]
    tokens = last["metrics"]["num_tokens"] - first["metrics"]["num_tokens"]
    seconds = last["created_at"] - first["created_at"]
    return {
        "steps": status.get("steps"),
        "tokens": tokens,
        "seconds": seconds,
        "rate": tokens / seconds,
        "loop_rate": float(status["trained_tokens"]) / float(status["loop_seconds"]),
        "wall": wall,
        "loss": status.get("train_loss"),
    }


def flops_per_token(model: Any, sequence: int) -> tuple[float, float]:
    """(6·N, 4·N + 6·N_lora + 6·L·s·d): the usual count and the LoRA work done, per token."""
    import torch

    base = model.get_base_model()
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    linear = sum(
        module.weight.numel()
        for name, module in base.named_modules()
        if isinstance(module, torch.nn.Linear) and "lora_" not in name  # the frozen layers and the LM head
    )
    config = base.config
    head_size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention = 6 * config.num_hidden_layers * sequence * config.num_attention_heads * head_size
    return 6.0 * linear, 4.0 * linear + 6.0 * lora + attention


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    import torch

    if not torch.cuda.is_available():
        os.environ["OMP_NUM_THREADS"] = "1"  # the trainer's too: a small model is fastest on one thread
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        model_dir, data = prepare(args, work)
        values = run_values(args, model_dir, data, work / "trainer", steps=1)
        model, batches = trainer_and_batches(values, work)
        print(f"{len(batches)} batches of {args.batch_size} x {args.max_length} tokens per epoch", flush=True)
        plain = Plain(model, batches, values["learning_rate"])
        rounds = [plain.round(args.plain_seconds)]
        report_round("plain 1", rounds[-1])
        steps = max(20, int(args.seconds * rounds[0][0] / rounds[0][2] * 0.8))
        trained = run_trainer(run_values(args, model_dir, data, work / "trainer", steps), work)
        print(f"trainer: {trained['steps']} steps in {trained['wall']:.1f} s wall (imports and loading included)")
        rounds.append(plain.round(args.plain_seconds))
        report_round("plain 2", rounds[-1])
        return report(args, trained, rounds, flops_per_token(model, args.max_length))


def report_round(name: str, result: tuple[int, int, float]) -> None:
    steps, tokens, seconds = result
    print(f"{name}: {steps} steps, {tokens} tokens in {seconds:.1f} s: {tokens / seconds:,.0f} tokens/s", flush=True)


def report(
    args: argparse.Namespace, trained: dict[str, Any], rounds: list[tuple[int, int, float]], flops: tuple[float, float]
) -> int:
    """Print tokens/s, the utilisations and the verdict; 0 on PASS."""
    plain_rates = [tokens / seconds for _, tokens, seconds in rounds]
    plain = statistics.median(plain_rates)
    print(f"\ntrainer (its steps after warm-up): {trained['rate']:,.0f} tokens/s (final loss {trained['loss']:.3f})")
    print(f"trainer (all its steps):           {trained['loop_rate']:,.0f} tokens/s")
    spread = f"{min(plain_rates):,.0f} to {max(plain_rates):,.0f}"
    print(f"plain loop:                        {plain:,.0f} tokens/s (median of {len(rounds)} rounds, {spread})")
    usual, lora = flops
    print(f"FLOPs per token: 6·N = {usual:.4g}; LoRA (4·N + 6·N_lora + attention) = {lora:.4g}")
    import torch

    peak = args.peak_tflops or (790.0 if torch.cuda.is_available() else 0.0)
    for name, rate in (("trainer", trained["rate"]), ("plain", plain)):
        if peak:
            print(
                f"{name}: MFU (6·N) {usual * rate / (peak * 1e12):.1%}, LoRA FLOPs utilisation "
                f"{lora * rate / (peak * 1e12):.1%} of {peak:.0f} TFLOP/s"
            )
        else:
            print(f"{name}: {lora * rate / 1e9:.3g} GFLOP/s of LoRA work (no peak given: --peak-tflops)")
    ratio = trained["rate"] / plain
    verdict = "PASS" if ratio >= args.target else "FAIL"
    print(f"trainer / plain: {ratio:.2f}x (target >= {args.target}x): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
