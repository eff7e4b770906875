"""The frozen model's answers on this CPU: SmolLM2-135M-Instruct (the demo's frozen model) decoding the demo's
held-out prompts, several ways side by side in one process, same prompts, same seed.

    python benchmarks/frozen_decode.py                 # batch 8 and 72, 64 new tokens, ~8 min on one thread
    python benchmarks/frozen_decode.py --batches 8     # quicker
    python benchmarks/frozen_decode.py --no-bf16       # without the bf16 rows (5 of the 8 minutes)

Rows (each timed after one warm-up call; ms per token step = wall time / 64, the prefill amortised in):

* ``generate fp32, eval sampling`` — ``model.generate`` with its own warpers for the evaluation's sampling (1.5, top_p
  0.6, top_k 20): the hf engine before it handed ``generate`` :meth:`Sampling.warpers`.
* ``hf engine fp32, eval sampling`` — :func:`alignpro.models.generation.generate_chat` today: the same draws without
  ``generate``'s whole-vocabulary top-p sort. The two rows must give identical tokens (checked, printed).
* ``hf engine fp32, train sampling`` — the answers during training (temperature 0.7, no top-k/top-p).
* ``hf engine bf16, train sampling`` — the same weights in bf16.

``--threads`` sets torch's threads (default 1, as the tests run; ``make demo`` uses every core). Results go to
``benchmarks/results/frozen-decode-<time>.json``; the last line printed is the eval-sampling ratio.
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
from alignpro.models.generation import generate_chat
from alignpro.models.sampling import Sampling

NEW_TOKENS = 64  # the demo's answer length (conf/experiment/steer.yaml frozen.max_new_tokens)


def timed(fn) -> tuple[object, float]:
    set_seed(0)
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


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
                 ("hf engine bf16, train sampling", engine(train_sampling, "bfloat16"))][: 3 if args.no_bf16 else 4]
        texts = {}
        for name, fn in cases:
            engine(Sampling(4, 0.0))()  # warm-up: allocator and first-call costs
            texts[name], seconds = timed(fn)
            row = {"batch": batch, "case": name, "seconds": seconds, "ms_per_token_step": 1000 * seconds / NEW_TOKENS}
            rows.append(row)
            print(f"batch {batch:3d}  {name:32s} {seconds:7.2f} s  {row['ms_per_token_step']:7.1f} ms/token step",
                  flush=True)
        same = texts["generate fp32, eval sampling"] == texts["hf engine fp32, eval sampling"]
        rows.append({"batch": batch, "case": "identical answers, generate vs hf engine (eval sampling)", "value": same})
        print(f"batch {batch:3d}  identical answers, generate vs hf engine: {same}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    file = out / f"frozen-decode-{datetime.now():%Y%m%d-%H%M%S}.json"
    file.write_text(json.dumps({"model": "SmolLM2-135M-Instruct", "new_tokens": NEW_TOKENS, "threads": args.threads,
                                "cpus": os.cpu_count(), "rows": rows}, indent=2))
    print(f"results: {file}")
    by = {(r["batch"], r["case"]): r.get("seconds") for r in rows}
    print("eval sampling, generate / hf engine: " + ", ".join(
        f"batch {b}: {by[(b, 'generate fp32, eval sampling')] / by[(b, 'hf engine fp32, eval sampling')]:.2f}x"
        for b in args.batches))


if __name__ == "__main__":
    main()
