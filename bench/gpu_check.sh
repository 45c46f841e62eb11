#!/usr/bin/env bash
# The GPU check: what the machine has, then LoRA SFT throughput through Flywheel's trainer entry point.
#
# Usage (from the repository root): bench/gpu_check.sh [--tiny] [bench/gpu_check.py options]
#   On a lent accelerator machine (no network, Python 3.12 with torch, transformers, peft and
#   accelerate but no trl):   bench/gpu_check.sh            (under 5 minutes; --seconds 120 by default)
#   Here, on CPU, to test it:  bench/gpu_check.sh --tiny     (about a minute)
# It prints the GPU, Python and library versions, installs the wheels carried in vendor/wheels
# (trl and the parts of datasets the machine may lack; no network) into a temporary directory for
# the distributions that are missing, then runs bench/gpu_check.py, which trains a random
# Qwen2.5-0.5B-shaped model with LoRA in bf16 and prints tokens/s and FLOPs utilisation beside a
# plain PyTorch loop. Environment: PYTHON (default python3),
# GPU_PEAK_TFLOPS (default 790, the bf16 matrix product measured on an H200), GPU_CHECK_FORCE_WHEELS=1
# installs every carried wheel that suits this Python even where the distribution is present.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3)}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export HF_DATASETS_DISABLE_PROGRESS_BARS=1

echo "== machine"
date -u
uname -srm
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
  || echo "nvidia-smi: none (CPU only)"
nproc
"$PYTHON" - <<'PY'
import importlib.metadata as metadata
import sys

print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "transformers", "peft", "accelerate", "datasets", "trl", "tokenizers", "safetensors", "pyarrow"):
    try:
        print(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"{name} (not installed)")
import torch

print("cuda", torch.version.cuda, "available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "bf16:", torch.cuda.is_bf16_supported())
PY

echo "== carried wheels"
SITE="$(mktemp -d -t gpu-check-site-XXXXXX)"
trap 'rm -rf "$SITE"' EXIT
MISSING="$("$PYTHON" - <<'PY'
import importlib.metadata as metadata
import os
import pathlib
import sys

force = os.environ.get("GPU_CHECK_FORCE_WHEELS") == "1"
tag = f"py{sys.version_info.major}{sys.version_info.minor}"
for wheel in sorted(pathlib.Path("vendor/wheels").glob("*.whl")):
    name, version, python = wheel.name.split("-")[:3]
    if python not in ("py3", tag):
        continue
    try:
        present = metadata.version(name)
    except metadata.PackageNotFoundError:
        present = None
    if force or present is None:
        print(wheel)
PY
)"
if [ -n "$MISSING" ]; then
  # shellcheck disable=SC2086 # one wheel path per word
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" $MISSING
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  echo "installed into $SITE:" $MISSING
else
  echo "nothing to install: every carried distribution is present"
fi
"$PYTHON" -c "import trl, datasets, peft; from trl import SFTTrainer; print('trl', trl.__version__, 'from', trl.__file__)"

echo "== LoRA SFT throughput"
"$PYTHON" bench/gpu_check.py "$@"
