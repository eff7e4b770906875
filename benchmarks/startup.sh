#!/usr/bin/env bash
# How long `python -m alignpro.train` takes to answer without training: `--cfg job` (print the composed config) and a
# refused bad value (lam=-1, exit 2). Times this checkout against another commit, side by side, with farm-bench
# (whole processes, A and B in turn, median of the pairwise ratio).
#   bash benchmarks/startup.sh <baseline commit> [runs]        # e.g. bash benchmarks/startup.sh edc36d8
# Writes benchmarks/results/startup-<date>-<time>.txt (farm-bench's report of both commands).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bash benchmarks/startup.sh <baseline commit> [runs]}
RUNS=${2:-5}
PY="$PWD/.venv/bin/python"
WT=$(mktemp -d /tmp/alignpro-baseline.XXXXXX)
trap 'git worktree remove --force "$WT" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$WT" "$BASE" >/dev/null 2>&1
OUT="benchmarks/results/startup-$(date -u +%Y%m%d-%H%M%S).txt"
export HF_HUB_OFFLINE=1
{
  echo "# this checkout ($(git rev-parse --short HEAD)) = A, baseline ($BASE) = B; python -m picks the cwd's alignpro"
  for ARGS in "--cfg job experiment=smoke" "experiment=smoke lam=-1 hydra.run.dir=/tmp/alignpro-startup-run"; do
    echo; echo "## python -m alignpro.train $ARGS"
    farm-bench -n "$RUNS" --timeout 600 \
      --vs "sh -c 'cd $WT && exec $PY -m alignpro.train $ARGS >/dev/null 2>&1'" \
      -- sh -c "exec $PY -m alignpro.train $ARGS >/dev/null 2>&1"
  done
} | tee "$OUT"
echo "written: $OUT"
