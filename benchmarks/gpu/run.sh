#!/usr/bin/env bash
# The device call's command (README.md beside this file): run(command="bash benchmarks/gpu/run.sh",
# carry=[".whl"], timeout_s=580), after benchmarks/gpu/prepare.sh here. Installs the carried wheels into the
# image's python3 (no index there), then runs check.py at paper scale; results land in $OUT. Extra arguments go to
# check.py (e.g. --parts f1_rlhf_trl,p1f1_alignpro_ours --budget 300).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/results/gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
PY=python3
pip_in() { "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$1" "${@:2}"; }
pip_in /tmp/site .whl/core/*.whl || { echo "installing .whl/core failed: run benchmarks/gpu/prepare.sh first"; exit 3; }
export PYTHONPATH="/tmp/site:$PWD"
# This repo's transformers (and its hub, and accelerate) only if it imports beside the image's packages.
if pip_in /tmp/site-tf .whl/tf/*.whl &&
   PYTHONPATH="/tmp/site-tf:$PYTHONPATH" "$PY" -c "import accelerate, datasets, hydra, peft
from trl import RLOOTrainer
from transformers import AutoModelForCausalLM, StaticCache"; then
  export PYTHONPATH="/tmp/site-tf:$PYTHONPATH"
else
  # The image's transformers (5.17 when last listed) lacks TrainingArguments.activation_checkpointing, which
  # alignpro/methods/rl.py passes: its training parts fail there; the decoding parts still give figures.
  echo "[run.sh] the carried transformers does not import here: the image's runs, and its training parts will fail"
fi
# The model cache (random full-size weights, ~32 GB) goes where the most disk is free.
if [ -z "${ALIGNPRO_CACHE:-}" ]; then
  best=/tmp; most=0
  for d in /tmp "$PWD" /root /var/tmp; do
    free=$(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')
    if [ -n "$free" ] && [ "$free" -gt "$most" ]; then most=$free; best=$d; fi
  done
  export ALIGNPRO_CACHE="$best/alignpro-gpu-cache"
fi
# transformers 5.2x kernelizes layers with hub kernels by default (its `kernels` dependency, absent from the image,
# and a download there is impossible): the torch implementations run, as in docs/gpu-anchors.md.
export USE_HUB_KERNELS=0 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
df -h /tmp "$PWD" 2>/dev/null; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
echo "[run.sh] cache $ALIGNPRO_CACHE; PYTHONPATH $PYTHONPATH"
"$PY" benchmarks/gpu/check.py --scale paper --out "$OUT" "$@"
