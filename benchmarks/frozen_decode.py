"""The frozen model's answers on this CPU: SmolLM2-135M-Instruct (the demo's frozen model) decoding the demo's
held-out prompts, several ways side by side in one process, same prompts, same seed.

    python benchmarks/frozen_decode.py                 # batch 8 and 72, 64 new tokens, ~15 min on one thread
    python benchmarks/frozen_decode.py --no-bf16       # without the bf16 rows: ~10 min
    python benchmarks/frozen_decode.py --batches 8     # quicker

Rows (each timed after one warm-up call; ms per token step = wall time / 64, the prefill amortised in):

* ``generate fp32, eval sampling`` — ``model.generate`` with its own warpers for the evaluation's sampling (1.5, top_p
  0.6, top_k 20): the hf engine before it handed ``generate`` :meth:`Sampling.warpers`.
* ``hf engine fp32, eval sampling`` — :func:`alignpro.models.generation.generate_chat` today: the same draws without
  ``generate``'s whole-vocabulary top-p sort. The two rows must give identical tokens (checked, printed).
* ``hf engine fp32, train sampling`` — the answers during training (temperature 0.7, no top-k/top-p).
* ``hf engine fp16 weights, eval/train sampling`` — ``frozen.cpu_weights=fp16``: every Linear through fbgemm's
  fp16-weight GEMM (:func:`alignpro.models.frozen.fp16_weights`), activations and sums fp32. How many answers come
  out identical to the fp32 rows is printed: the weights move by fp16 rounding, so sampled answers may part.
* ``hf engine bf16, train sampling`` — the same weights in bf16.
* ``fp32 floor`` — not a run: the fastest one call could be at this CPU's own ceilings, measured first (one thread's
  fp32 GEMM peak and memory read bandwidth; :func:`floor_seconds` says what it counts).

``--threads`` sets torch's threads (default 1, as the tests run; ``make demo`` uses every core). Results go to
``benchmarks/results/frozen-decode-<time>.json``; the last lines printed are the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from alignpro.config.compose import compose_config
from alignpro.data.preferences import load_splits
from alignpro.models.assets import export_smollm2
from alignpro.models.chat import chat_ids, left_pad
from alignpro.models.frozen import fp16_weights
from alignpro.models.generation import generate_chat
from alignpro.models.sampling import Sampling

NEW_TOKENS = 64  # the demo's answer length (conf/experiment/steer.yaml frozen.max_new_tokens)


def timed(fn) -> tuple[object, float]:
    set_seed(0)
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def best_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def machine_ceilings() -> dict[str, float]:
    """What one torch thread reaches on this CPU: fp32 GEMM throughput (a 1024³ matmul, compute-bound) and memory
    read bandwidth (summing 512 MiB, which no cache holds)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    x = torch.randn(128 * 2**20)
    return {"gemm_gflops": 2 * 1024**3 / best_seconds(lambda: a @ b, 5) / 1e9,
            "read_gbps": x.numel() * 4 / best_seconds(x.sum, 3) / 1e9}


def floor_seconds(model, enc: dict, ceilings: dict[str, float], new_tokens: int = NEW_TOKENS) -> float:
    """The fastest one call could be at these ceilings, fp32. The prefill runs every layer's matmuls on each padded
    prompt token (the head only on the last); each decode step runs all of them on one token per row, and reads
    every weight once, so it takes the longer of its FLOPs and its bytes. Attention's own FLOPs (about 3 % at these
    lengths) and the elementwise work are left out, so the floor is a little low."""
    head = model.get_output_embeddings().weight.numel()
    layers = sum(m.weight.numel() for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear))
    rows, width = enc["input_ids"].shape
    flops_per_s, bytes_per_s = ceilings["gemm_gflops"] * 1e9, ceilings["read_gbps"] * 1e9
    prefill = 2 * (layers * rows * width + head * rows) / flops_per_s
    step = max(2 * (layers + head) * rows / flops_per_s, 4 * (layers + head) / bytes_per_s)
    return prefill + new_tokens * step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 72])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 rows (about 5 minutes at batch 72)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    demo = compose_config(["experiment=steer"])
    heldout = [r["prompt"] for r in load_splits(demo.dataset).heldout]
    path = export_smollm2()
    tok = AutoTokenizer.from_pretrained(path)
    dtypes = ("float32",) if args.no_bf16 else ("float32", "bfloat16")
    models = {dtype: AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval() for dtype in dtypes}
    models["fp16 weights"] = fp16_weights(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval())
    ceilings = machine_ceilings()
    print(f"this CPU, one thread: fp32 GEMM {ceilings['gemm_gflops']:.1f} GFLOP/s, "
          f"memory read {ceilings['read_gbps']:.1f} GB/s", flush=True)
    s = demo.eval.sampling
    eval_sampling = Sampling(NEW_TOKENS, s.temperature, s.top_p, s.top_k)
    train_sampling = Sampling.from_config(demo.frozen.sampling, NEW_TOKENS)
    rows = []
    for batch in args.batches:
        convs = [[{"role": "user", "content": x}] for x in heldout[:batch]]
        enc = left_pad(chat_ids(tok, convs), tok.pad_token_id)

        def plain_generate(sampling=eval_sampling, enc=enc):
            with torch.inference_mode():
                out = models["float32"].generate(**enc, **sampling.generate_kwargs(), pad_token_id=tok.pad_token_id)
            return [t.strip() for t in tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]

        def engine(sampling, dtype="float32", convs=convs, batch=batch):
            return lambda: generate_chat(models[dtype], tok, convs, sampling, batch_size=batch)

        cases = [("generate fp32, eval sampling", plain_generate),
                 ("hf engine fp32, eval sampling", engine(eval_sampling)),
                 ("hf engine fp32, train sampling", engine(train_sampling)),
                 ("hf engine fp16 weights, eval sampling", engine(eval_sampling, "fp16 weights")),
                 ("hf engine fp16 weights, train sampling", engine(train_sampling, "fp16 weights"))]
        if not args.no_bf16:
            cases.append(("hf engine bf16, train sampling", engine(train_sampling, "bfloat16")))
        texts = {}
        for dtype in models:  # warm-up: allocator and first-call costs, each model at this batch's shapes
            engine(Sampling(4, 0.0), dtype)()
        for name, fn in cases:
            texts[name], seconds = timed(fn)
            row = {"batch": batch, "case": name, "seconds": seconds, "ms_per_token_step": 1000 * seconds / NEW_TOKENS}
            rows.append(row)
            print(f"batch {batch:3d}  {name:38s} {seconds:7.2f} s  {row['ms_per_token_step']:7.1f} ms/token step",
                  flush=True)
        floor = floor_seconds(models["float32"], enc, ceilings)
        rows.append({"batch": batch, "case": "fp32 floor at this CPU's ceilings", "seconds": floor,
                     "ms_per_token_step": 1000 * floor / NEW_TOKENS, "padded_prompt_tokens": enc["input_ids"].numel()})
        print(f"batch {batch:3d}  {'fp32 floor (GEMM peak, read bandwidth)':38s} {floor:7.2f} s  "
              f"{1000 * floor / NEW_TOKENS:7.1f} ms/token step", flush=True)
        same = texts["generate fp32, eval sampling"] == texts["hf engine fp32, eval sampling"]
        rows.append({"batch": batch, "case": "identical answers, generate vs hf engine (eval sampling)", "value": same})
        print(f"batch {batch:3d}  identical answers, generate vs hf engine: {same}", flush=True)
        for kind in ("eval", "train"):
            a, b = texts[f"hf engine fp32, {kind} sampling"], texts[f"hf engine fp16 weights, {kind} sampling"]
            n = sum(x == y for x, y in zip(a, b, strict=True))
            rows.append({"batch": batch, "case": f"answers identical, fp32 vs fp16 weights ({kind} sampling)",
                         "value": n, "of": len(a)})
            print(f"batch {batch:3d}  answers identical, fp32 vs fp16 weights ({kind} sampling): {n} of {len(a)}",
                  flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    file = out / f"frozen-decode-{datetime.now():%Y%m%d-%H%M%S}.json"
    file.write_text(json.dumps({"model": "SmolLM2-135M-Instruct", "new_tokens": NEW_TOKENS, "threads": args.threads,
                                "cpus": os.cpu_count(), "cpu": cpu_name(), "ceilings": ceilings, "rows": rows},
                               indent=2))
    print(f"results: {file}")
    by = {(r["batch"], r["case"]): r.get("seconds") for r in rows}
    print("eval sampling, generate / hf engine: " + ", ".join(
        f"batch {b}: {by[(b, 'generate fp32, eval sampling')] / by[(b, 'hf engine fp32, eval sampling')]:.2f}x"
        for b in args.batches))
    for kind in ("eval", "train"):
        ratios = (by[(b, f"hf engine fp32, {kind} sampling")] / by[(b, f"hf engine fp16 weights, {kind} sampling")]
                  for b in args.batches)
        print(f"{kind} sampling, hf engine fp32 / fp16 weights: "
              + ", ".join(f"batch {b}: {r:.2f}x" for b, r in zip(args.batches, ratios, strict=True)))


if __name__ == "__main__":
    main()
