"""Side-by-side generation benchmark: TRL's default generation path (``model.generate``, dynamic cache, eager) against
``alignpro.models.generation``'s compiled engine (``alignpro.models.decode``: static KV cache, own decode loop,
compiled step on CUDA), same process, same random-weight models, same inputs.

    python benchmarks/generation.py --device cuda         # paper shapes (docs/gpu-anchors.md): 8B frozen, 1.5B prompter
    python benchmarks/generation.py --device cpu --quick          # small shapes, < 1 minute on 2 CPU cores

Fixed-length decoding (no EOS, ``max_new_tokens`` steps), sampling with top_k 0 / top_p 1 as in the anchors, timing
after a warm-up call. Reported per model: ms per decode step (wall time / new tokens: the prefill is amortised in),
tokens/s, the weight-streaming floor (weight bytes / read bandwidth: 1.51 TB/s measured on the anchors' H100; on
CPU the read bandwidth is measured here with a large tensor copy) and the fraction of it reached, peak memory. The
"full step" is prompter generation + frozen generation for one Align-Pro step (batch × rewrite tokens, then batch ×
answer tokens) on each path. Results go to ``<out>/<device>-<timestamp>.json``; the last line printed is the ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import datetime
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from alignpro.models.decode import decode
from alignpro.models.sampling import Sampling

H100_READ_BW = 1.51e12  # bytes/s, docs/gpu-anchors.md (device-to-device copy 3.02 TB/s read+write)

PAPER = {
    "frozen_llama31_8b": (LlamaForCausalLM, LlamaConfig(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, rope_theta=500000.0, tie_word_embeddings=False)),
    "prompter_qwen25_1_5b": (Qwen2ForCausalLM, Qwen2Config(
        vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, tie_word_embeddings=True)),
}
# CPU --quick: the same two families, shrunk so that both paths and both models run in well under a minute.
QUICK = {
    "frozen_llama_small": (LlamaForCausalLM, LlamaConfig(
        vocab_size=8192, hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=2, tie_word_embeddings=False)),
    "prompter_qwen2_small": (Qwen2ForCausalLM, Qwen2Config(
        vocab_size=8192, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True)),
}


def read_bandwidth(device: torch.device) -> float:
    """Bytes/s read by a large tensor copy (half of read+write traffic)."""
    n = (256 if device.type == "cuda" else 64) * 2**20
    a = torch.empty(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    sync(device)
    t = time.perf_counter()
    for _ in range(5):
        b.copy_(a)
    sync(device)
    return 5 * n / (time.perf_counter() - t)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB; process-wide high-water mark


def time_path(model, ids, mask, sampling: Sampling, path: str, compiled: bool, repeats: int) -> float:
    """Seconds per call (best of ``repeats`` after one warm-up) for one path."""
    def once():
        if path == "hf":
            model.generate(input_ids=ids, attention_mask=mask, **sampling.generate_kwargs(),
                           min_new_tokens=sampling.max_new_tokens, eos_token_id=None, pad_token_id=0)
        else:
            decode(model, ids, mask, sampling, eos=[], pad_id=0, compiled=compiled)

    once()  # warm-up (compilation, allocator)
    best = float("inf")
    for _ in range(repeats):
        sync(ids.device)
        t = time.perf_counter()
        once()
        sync(ids.device)
        best = min(best, time.perf_counter() - t)
    return best


def bench_model(name, cls, cfg, device, dtype, batch, prompt_len, new_tokens, compiled, bandwidth, repeats):
    torch.manual_seed(0)
    with torch.device(device):
        model = cls(cfg).to(dtype).eval()
    model.generation_config.eos_token_id = None
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    ids = torch.randint(3, cfg.vocab_size, (batch, prompt_len), device=device)
    mask = torch.ones_like(ids)
    sampling = Sampling(new_tokens, 1.0, 1.0, 0)
    floor_ms = weight_bytes / bandwidth * 1e3
    row = {"model": name, "params": sum(p.numel() for p in model.parameters()), "weight_bytes": weight_bytes,
           "batch": batch, "prompt_tokens": prompt_len, "new_tokens": new_tokens, "floor_ms_per_step": floor_ms}
    for path in ("hf", "compiled"):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            sec = time_path(model, ids, mask, sampling, path, compiled and path == "compiled", repeats)
        ms = sec / new_tokens * 1e3
        row[path] = {"seconds": sec, "ms_per_step": ms, "tokens_per_s": batch * new_tokens / sec,
                     "fraction_of_floor": floor_ms / ms, "peak_memory_bytes": peak_memory_bytes(device)}
    row["speedup"] = row["hf"]["seconds"] / row["compiled"]["seconds"]
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small shapes (CPU smoke run, < 1 minute)")
    ap.add_argument("--batch", type=int, default=None, help="rows per batch (default 64; --quick 8)")
    ap.add_argument("--new-tokens", type=int, default=None, help="answer tokens (default 256; --quick 32)")
    ap.add_argument("--rewrite-tokens", type=int, default=None, help="prompter tokens (default 128; --quick 16)")
    ap.add_argument("--prompt-tokens", type=int, default=None, help="prompt length (default 128; --quick 32)")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto = on for cuda")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    quick = a.quick
    batch = a.batch or (8 if quick else 64)
    answer_tokens = a.new_tokens or (32 if quick else 256)
    rewrite_tokens = a.rewrite_tokens or (16 if quick else 128)
    prompt_len = a.prompt_tokens or (32 if quick else 128)
    repeats = a.repeats or (5 if quick else 3)
    compiled = device.type == "cuda" if a.compile == "auto" else a.compile == "on"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    bandwidth = H100_READ_BW if (device.type == "cuda" and "H100" in torch.cuda.get_device_name()) \
        else read_bandwidth(device)
    shapes = QUICK if quick else PAPER
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    rows = {}
    for name, (cls, cfg) in shapes.items():
        n_new = rewrite_tokens if name.startswith("prompter") else answer_tokens
        rows[name] = bench_model(name, cls, cfg, device, dtype, batch, prompt_len, n_new, compiled, bandwidth,
                                 repeats)
        r = rows[name]
        print(f"{name:22s} batch {batch:3d} new {n_new:4d} | floor {r['floor_ms_per_step']:7.2f} ms/step | "
              + " | ".join(f"{p}: {r[p]['ms_per_step']:8.2f} ms/step {r[p]['tokens_per_s']:9.0f} tok/s "
                           f"{100 * r[p]['fraction_of_floor']:5.1f}% of floor "
                           f"peak {r[p]['peak_memory_bytes'] / 2**30:6.2f} GiB" for p in ("hf", "compiled"))
              + f" | speedup {r['speedup']:.2f}x", flush=True)
    step = {p: sum(rows[n][p]["seconds"] for n in rows) for p in ("hf", "compiled")}
    result = {
        "device": device_name, "torch": torch.__version__, "quick": quick, "dtype": str(dtype),
        "compiled_step": compiled, "read_bandwidth_bytes_per_s": bandwidth, "models": rows,
        "full_step_generation_seconds": step,
        "full_step_breakdown": {p: {n: rows[n][p]["seconds"] for n in rows} for p in ("hf", "compiled")},
        "full_step_speedup": step["hf"] / step["compiled"],
        "note": "full step = prompter rewrite generation + frozen answer generation, the ~97 % of an Align-Pro "
                "step that is generation (docs/gpu-anchors.md); training (~1 s at the paper shape) is not timed here",
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = device_name.split(" (")[0].replace(" ", "_").replace("/", "_")
    path = out / f"{tag}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"full step generation: hf {step['hf']:.3f} s, compiled {step['compiled']:.3f} s -> {path}")
    print(f"speed ratio (hf / compiled, full step generation, {device_name}): {result['full_step_speedup']:.2f}x")
    return result


if __name__ == "__main__":
    main()
