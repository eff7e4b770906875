#!/usr/bin/env bash
# llama.cpp's own batched decoding of the demo's frozen model, for comparison with benchmarks/frozen_decode.py:
# the exact Q4_1 GGUF that alignpro exports SmolLM2-135M-Instruct from, at the demo's shapes (batch 1, 8 and 72,
# 44 prompt tokens, 64 new tokens), on one thread as the tests run.
#
#   bash benchmarks/llama_cpp_batched.sh              # builds llama.cpp first (about 12 min on 2 cores), then ~2 min
#   LLAMA_BUILD=/tmp/llbuild bash benchmarks/llama_cpp_batched.sh    # reuse a build folder that has the tool
#
# llama.cpp comes from the llama-cpp-python sdist on PyPI (its vendored source; no network beyond the registry);
# only the `llama-batched-bench` target is built, with GGML_NATIVE (this CPU's own instruction set). The build time
# is printed, because a llama.cpp-backed default would pay it in every cold setup. Output:
# benchmarks/results/llama-cpp-batched-<time>.txt (the tool's table; T_PP = prefill, T_TG = the 64 decode steps).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSION=${LLAMA_CPP_PYTHON:-0.3.36}
BUILD=${LLAMA_BUILD:-outputs/llama-cpp-build}
THREADS=${THREADS:-1}
GGUF=$(HF_HUB_OFFLINE=1 "$PY" -c "from alignpro.config.sources import smollm2_gguf_path; print(smollm2_gguf_path())")
if [ ! -x "$BUILD/bin/llama-batched-bench" ]; then
  src=$(mktemp -d)
  start=$(date +%s)
  "$PY" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$src" >/dev/null
  tar -xzf "$src"/llama_cpp_python-"$VERSION".tar.gz -C "$src"
  cmake -S "$src/llama_cpp_python-$VERSION/vendor/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF >/dev/null
  cmake --build "$BUILD" --target llama-batched-bench -j "$(nproc)" >/dev/null
  echo "built llama-batched-bench in $(( $(date +%s) - start )) s" | tee "$BUILD/build-time.txt"
  rm -rf "$src"
fi
out=benchmarks/results/llama-cpp-batched-$(date +%Y%m%d-%H%M%S).txt
{
  echo "# $(date -Iseconds) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, threads $THREADS"
  echo "# llama.cpp from llama-cpp-python==$VERSION; $(cat "$BUILD/build-time.txt" 2>/dev/null || echo 'build time not recorded')"
  echo "# $(basename "$GGUF")"
  "$BUILD/bin/llama-batched-bench" -m "$GGUF" -c 8192 -b 4096 -ub 512 -npp 44 -ntg 64 -npl 1,8,72 -t "$THREADS" 2>&1 \
    | grep -E '^\|'
} | tee "$out"
echo "results: $out"
