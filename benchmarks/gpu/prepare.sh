#!/usr/bin/env bash
# Run HERE (a machine with PyPI), before the device call: downloads into .whl/ (git-ignored) the wheels the H200
# image lacks, for its Python 3.12 on x86-64, as listed in benchmarks/gpu/wheels.txt, and prints what the call
# will carry. The repository itself travels as the working tree and runs from PYTHONPATH (no wheel of it).
#   bash benchmarks/gpu/prepare.sh            # then: run(command="bash benchmarks/gpu/run.sh", carry=[".whl"])
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEST=.whl
LIMIT=$((64 * 1024 * 1024))  # what one device call may carry: working tree + carried paths

# Every platform tag a manylinux x86-64 wheel of these packages uses; pip matches each exactly.
PLATFORMS=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
           manylinux1_x86_64 any; do
  PLATFORMS+=(--platform "$tag")
done

rm -rf "$DEST"  # one version of each package: two in the folder stop the whole install there
mkdir -p "$DEST/core" "$DEST/tf"
while read -r spec tier kind; do
  case "$spec" in ''|\#*) continue ;; esac
  if [ "${kind:-}" = sdist ]; then
    # Pure Python, published as a source release only: build the wheel here (any Python 3 builds the same one).
    "$PY" -m pip wheel -q --no-deps --no-binary :all: -w "$DEST/$tier" "$spec"
  else
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${PLATFORMS[@]}" -d "$DEST/$tier" "$spec"
  fi
done < benchmarks/gpu/wheels.txt

wheels=$(du -sb "$DEST" | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$((wheels + tree))
printf 'wheels: %d files, %.1f MiB (core %.1f, tf %.1f); working tree %.1f MiB; carried in all %.1f MiB of %d\n' \
  "$(find "$DEST" -name '*.whl' | wc -l)" "$(echo "$wheels / 1048576" | bc -l)" \
  "$(echo "$(du -sb "$DEST/core" | cut -f1) / 1048576" | bc -l)" \
  "$(echo "$(du -sb "$DEST/tf" | cut -f1) / 1048576" | bc -l)" \
  "$(echo "$tree / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)" $((LIMIT / 1048576))
if [ "$total" -gt "$LIMIT" ]; then
  echo "too large for one device call (64 MiB): drop the tf tier from wheels.txt (the image's transformers then runs)" >&2
  exit 1
fi
