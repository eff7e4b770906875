"""The prepared GPU check: the paper's shapes with random weights on one GPU, in one device call of under 10 minutes.

    bash benchmarks/gpu/run.sh                                  # on the GPU machine (README.md beside this file)
    python benchmarks/gpu/check.py --scale tiny --out /tmp/chk  # the same code paths on a CPU at tiny shapes (tests)

Time and memory of fixed-shape training and decoding do not depend on weight values, so every model here is a
paper model at its EXACT shape with random weights (``source: random``, alignpro/models/paper_models.py; ``miniature``
at
``--scale tiny``). Parts, most important first; each runs in its own subprocess (so ``torch.cuda.max_memory_allocated``
is that part's alone, and a hung part can be killed) under a time guard, and the JSON and markdown are rewritten
after every part, so a call cut short still returns what finished:

* ``env``: GPU, versions, date, and the read bandwidth (a ``sum`` over a 4 GiB tensor).
* ``gen_<model>`` (c): decoding at batch 64, 128-token prompts, 256 new tokens, our engine
  (``generation.engine=compiled``: static cache, CUDA-graph step) against TRL's default path (``model.generate``,
  dynamic cache, eager = ``engine=hf``): ms per decode step (prefill taken out), tokens/s, and the floor
  weight bytes / read bandwidth per step.
* ``<cell>_<method>_<engine>`` (a, b): the arm's training through its method (alignpro/methods/) exactly as
  ``python -m alignpro.train`` runs it, for one or two generation rounds (each trained ``num_iterations`` times)
  at the cell's batch, rewrite and answer lengths:
  seconds per round and per stage (prompter sampling, frozen answers, reward, the rest = log-probs + updates),
  tokens/s, peak memory beside the plan (``alignpro.tools.plan``, when present). The held-out evaluation is not run: it
  is generation by the same engines, measured in the ``gen_*`` parts, and would cost a minute of device time.

Results: ``<out>/gpu-check.json`` and ``<out>/gpu-check.md``; each figure carries the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # on the GPU machine the working tree runs uninstalled
    sys.path.insert(0, str(ROOT))

P2F1 = "paper/qwen25_1_5b_llama31_8b_ultrafeedback"
P1F1 = "paper/phi35_mini_llama31_8b_ultrafeedback"
FROZEN_8B = "meta-llama/Llama-3.1-8B-Instruct"
PROMPTER_1_5B = "Qwen/Qwen2.5-1.5B-Instruct"
# "Our engine" for a whole Align-Pro step: answers through generation.engine=compiled, and the prompter's own TRL
# rollouts on a static cache that transformers compiles (alignpro.models.generation.trl_generation_options). The
# per-stage
# split shows what each half gives.
OURS = ("generation.engine=compiled", "+trainer.extra.cache_implementation=static")
TRL_DEFAULT = ("generation.engine=hf",)
GOAL_DECODE_MS = 15.0  # the frozen 8B-shape decode step at batch 64 on an H200
GOAL_STEP_SPEEDUP = 3.0  # Align-Pro step, TRL's default generation / ours
GOAL_MEMORY_REL = 0.10  # every arm's peak within 10 % of the plan


@dataclass(frozen=True)
class Scale:
    """Shapes of one run of the check: ``paper`` on a GPU, ``tiny`` on a CPU (the test suite)."""

    name: str
    source: str  # model source of every job's models: random (full size) | miniature
    device: str
    dtype: str
    gen_batch: int
    gen_prompt: int
    gen_new: int
    bandwidth_bytes: int  # size of the tensor summed for the read bandwidth
    steps: int  # generation rounds per job at most (the first one warms up: compilation, allocator)
    job_overrides: tuple[str, ...] = ()
    budget_s: float = 530.0  # the whole check; parts that no longer fit are skipped


SCALES = {
    "paper": Scale("paper", "random", "cuda", "bfloat16", 64, 128, 256, 4 * 2**30, 2, budget_s=530.0),
    "tiny": Scale("tiny", "miniature", "cpu", "float32", 4, 16, 8, 64 * 2**20, 1, (
        "trainer.num_iterations=1",
        "trainer.prompts_per_step=1", "trainer.num_generations=2", "prompter.max_new_tokens=8",
        "frozen.max_new_tokens=8", "trainer.gradient_checkpointing=false", "reward.max_length=512",
        "trainer.bf16=false"), budget_s=600.0),
}


@dataclass(frozen=True)
class Part:
    """One unit of the check. ``estimate_s``: expected seconds on one H200 at paper scale (an estimate, written
    before any run); ``guard_s``: the part is killed after this long; it is skipped when less than ``min_s`` of
    the budget is left."""

    name: str
    kind: str  # env | gen | job
    what: str
    estimate_s: float
    guard_s: float
    min_s: float
    spec: dict = field(default_factory=dict)


def job_part(name: str, what: str, experiment: str, method: str, engine: tuple[str, ...], estimate_s: float,
             guard_s: float, generations: int = 2) -> Part:
    spec = {"experiment": experiment, "method": method, "engine": list(engine), "generations": generations}
    if engine == OURS:  # if TRL's static-cache rollouts fail, the answers alone on our engine still give a figure
        spec["fallback"] = ["generation.engine=compiled"]
    return Part(name, "job", what, estimate_s, guard_s, min_s=0.5 * estimate_s, spec=spec)


PARTS = [
    Part("env", "env", "GPU, versions, read bandwidth", 10, 60, 0),
    Part("gen_llama31_8b", "gen", "decode, Llama-3.1-8B shape: ours vs generate()", 75, 150, 40,
         {"model_id": FROZEN_8B}),
    # The first training part also builds the random models into the cache (~1 minute).
    job_part("p2f1_alignpro_ours", "P2-F1 Align-Pro, our engine", P2F1, "alignpro", OURS, 230, 300),
    # Eager generation compiles nothing, so its first round is already a steady one (and costs ~2 minutes).
    job_part("p2f1_alignpro_trl", "P2-F1 Align-Pro, TRL's default generation", P2F1, "alignpro", TRL_DEFAULT,
             160, 230, generations=1),
    job_part("f1_rlhf_trl", "F1 oracle (RLHF on Llama-3.1-8B, LoRA)", P2F1, "rlhf", TRL_DEFAULT, 90, 180,
             generations=1),
    job_part("p1f1_alignpro_ours", "P1-F1 Align-Pro (Phi-3.5 LoRA), our engine", P1F1, "alignpro", OURS, 175,
             260),
    Part("gen_qwen25_1_5b", "gen", "decode, Qwen2.5-1.5B shape: ours vs generate()", 60, 120, 30,
         {"model_id": PROMPTER_1_5B}),
]
PART_NAMES = [p.name for p in PARTS]


# ---- helpers shared by the parts ----------------------------------------------------------------------------------
def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data: Any) -> None:
    """Atomic write (alignpro.run.directory.write_atomic): a part killed mid-write leaves the previous complete file."""
    from alignpro.run.directory import write_atomic

    write_atomic(path, json.dumps(data, indent=2, default=str))


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def peak_gb(device: str) -> dict:
    """Peak memory of this process: CUDA allocated/reserved, or the CPU high-water mark (RSS) on a CPU."""
    if device == "cuda":
        import torch

        return {"cuda_max_memory_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
                "cuda_max_memory_reserved_gb": torch.cuda.max_memory_reserved() / 1e9}
    import resource

    return {"cpu_max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}


def versions() -> dict:
    from importlib import metadata

    out = {}
    for dist in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "hydra-core", "tokenizers",
                 "huggingface-hub"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def imported_distributions() -> list[str]:
    """The distributions this process imported (top-level modules mapped to what installed them): what the GPU
    machine must have or be carried (tests/test_gpu_check.py holds them against the image list + wheels.txt). A
    namespace shared by several distributions (``google``, ``hydra_plugins``) is resolved by its imported
    subpackages."""
    from importlib import metadata

    mapping = metadata.packages_distributions()
    names = [n for n, m in list(sys.modules.items()) if m is not None]
    out: set[str] = set()
    for top in {n.split(".")[0] for n in names}:
        dists = mapping.get(top, [])
        if len(dists) <= 1:
            out.update(dists)
            continue
        subs = {"/".join(n.split(".")[:2]) for n in names if n.startswith(f"{top}.")}
        for d in dists:
            files = {str(f).rsplit("/", 1)[0] for f in metadata.distribution(d).files or ()}
            if any(f == sub or f.startswith(f"{sub}/") for f in files for sub in subs):
                out.add(d)
    return sorted(out)


def model_config(model_id: str, scale: Scale) -> Any:
    """The transformers config of a paper model at the scale's size, from the shipped hub config."""
    from transformers import AutoConfig

    from alignpro.models.paper_models import MINIATURE, shrunk_config

    fields = shrunk_config(model_id, None if scale.source == "random" else MINIATURE)
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


# ---- env: versions and read bandwidth -----------------------------------------------------------------------------
def read_bandwidth(device: str, n_bytes: int, repeats: int = 5) -> float:
    """Bytes/s read by a ``sum`` over an ``n_bytes`` bf16 tensor (a read-only stream: the decode floor's
    denominator), best of ``repeats`` after a warm-up."""
    import torch

    x = torch.ones(n_bytes // 2, dtype=torch.bfloat16, device=device)
    x.sum()
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        x.sum()
        sync(device)
        best = min(best, time.perf_counter() - t)
    del x
    return n_bytes / best


def part_env(scale: Scale) -> dict:
    import torch

    device = scale.device
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_gb": props.total_memory / 1e9, "sms": props.multi_processor_count,
               "cuda": torch.version.cuda, "capability": f"{props.major}.{props.minor}"}
    else:
        gpu = {"name": f"cpu ({torch.get_num_threads()} threads)"}
    bw = read_bandwidth(device, scale.bandwidth_bytes)
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"gpu": gpu, "read_bandwidth_bytes_per_s": bw, "read_bandwidth_tb_per_s": bw / 1e12,
            "bandwidth_tensor_bytes": scale.bandwidth_bytes, "versions": versions(),
            "python": platform.python_version(), "USE_HUB_KERNELS": os.environ.get("USE_HUB_KERNELS"),
            "date_utc": now_utc(), "scale": scale.name}


# ---- gen: our engine against generate() --------------------------------------------------------------------------
def part_gen(scale: Scale, spec: dict, bandwidth: float, progress: Callable[[dict], None]) -> dict:
    """Decode ``gen_new`` tokens at ``gen_batch`` rows after ``gen_prompt`` prompt tokens, sampling (top_k 0, top_p
    1), no EOS, on both paths; ms per decode step = (wall − one prefill forward) / new tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    from alignpro.models.decode import decode
    from alignpro.models.sampling import Sampling

    device, model_id = scale.device, spec["model_id"]
    dtype = getattr(torch, scale.dtype)
    cfg = model_config(model_id, scale)
    torch.manual_seed(0)
    t = time.perf_counter()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()
    sync(device)
    build_s = time.perf_counter() - t
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    b, n_prompt, n_new = scale.gen_batch, scale.gen_prompt, scale.gen_new
    ids = torch.randint(1000, min(100000, cfg.vocab_size - 1), (b, n_prompt), device=device)
    mask = torch.ones_like(ids)
    kv_bytes = (2 * cfg.num_hidden_layers * b * cfg.num_key_value_heads
                * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
                * (n_prompt + n_new // 2) * torch.finfo(dtype).bits // 8)
    floor_ms = weight_bytes / bandwidth * 1e3
    row: dict[str, Any] = {
        "model_id": model_id, "params": sum(p.numel() for p in model.parameters()), "weight_bytes": weight_bytes,
        "batch": b, "prompt_tokens": n_prompt, "new_tokens": n_new, "dtype": scale.dtype, "build_s": build_s,
        "floor_ms_per_step": floor_ms,
        "floor_with_kv_ms_per_step": (weight_bytes + kv_bytes) / bandwidth * 1e3,  # mean KV length read per step
        "paths": {},
    }
    with torch.inference_mode():  # one eager prefill forward: the part of each call that is not decoding
        model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
        sync(device)
        t = time.perf_counter()
        model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
        sync(device)
        row["prefill_s"] = prefill = time.perf_counter() - t

    compiled = device == "cuda"  # as generation.compile=auto

    def call(path: str, new: int) -> float:
        s = Sampling(new, 1.0, 1.0, 0)
        sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            if path == "hf":
                model.generate(input_ids=ids, attention_mask=mask, **s.generate_kwargs(), min_new_tokens=new,
                               eos_token_id=None, pad_token_id=0)
            else:
                decode(model, ids, mask, s, eos=[], pad_id=0, compiled=compiled)
        sync(device)
        return time.perf_counter() - t0

    # ours first: the goal's figure; generate() costs ~0.1 s per step eagerly, so it gets a short warm-up
    for path, warm_new in (("compiled", n_new), ("hf", 2)):
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        warm = call(path, warm_new)  # compilation and CUDA-graph capture on ours (same shapes as the timed call)
        sec = call(path, n_new)
        decode_ms = max(sec - prefill, 1e-9) / n_new * 1e3
        row["paths"][path] = {
            "engine": "generation.engine=compiled" if path == "compiled" else "generation.engine=hf",
            "compiled_step": compiled and path == "compiled", "warmup_s": warm, "seconds": sec,
            "ms_per_step": sec / n_new * 1e3, "decode_ms_per_step": decode_ms,
            "tokens_per_s": b * n_new / sec, "fraction_of_floor": floor_ms / decode_ms, **peak_gb(device)}
        progress(row)
    if "hf" in row["paths"] and "compiled" in row["paths"]:
        row["speedup"] = row["paths"]["hf"]["seconds"] / row["paths"]["compiled"]["seconds"]
    return row


# ---- job: an arm's training, as alignpro.train runs it --------------------------------------------------------------
def job_overrides(scale: Scale, spec: dict) -> list[str]:
    s = scale.source
    return [f"experiment={spec['experiment']}", f"method={spec['method']}", *spec["engine"],
            f"prompter.source={s}", f"frozen.source={s}", f"reward.source={s}", f"device={scale.device}",
            "dataset=embedded", "logger=none", "trainer.save_steps=0",
            *scale.job_overrides]


def train_command(overrides: list[str]) -> str:
    return "HF_HUB_OFFLINE=1 python -m alignpro.train " + " ".join(overrides)


def plan_peaks(cfg: Any, prompts: list[str]) -> dict:
    """The memory plan's peak for this arm (``alignpro.tools.plan.plan_arm``): at the longest prompt of the data this
    check trains on (what it is held against) and at the plan's default prompt length (what the README quotes)."""
    try:
        from transformers import AutoTokenizer

        from alignpro.models.assets import resolve_model
        from alignpro.tools.plan import PROMPT_TOKENS, plan_arm
    except ImportError as err:  # no plan in this checkout: the column stays empty
        return {"plan_error": f"{type(err).__name__}: {err}"}
    try:
        policy = cfg.prompter if cfg.method.name == "alignpro" else cfg.frozen
        role = "prompter" if cfg.method.name == "alignpro" else "frozen"
        tok = AutoTokenizer.from_pretrained(resolve_model(policy.source, policy.model_id, role=role))
        x = max(len(tok(p)["input_ids"]) for p in prompts)
        return {"plan_prompt_tokens": x, "plan_peak_gb": plan_arm(cfg, prompt_tokens=x).peak / 1e9,
                "plan_default_prompt_tokens": PROMPT_TOKENS, "plan_peak_gb_default_prompt": plan_arm(cfg).peak / 1e9}
    except Exception as err:  # the plan's API moved: say so, keep the measurement
        return {"plan_error": f"{type(err).__name__}: {err}"[:500]}


def run_job(scale: Scale, spec: dict, generations: int, out: Path) -> dict:
    """The first half of ``alignpro.train.train`` (config → data → reward → frozen → the method's training), with
    a per-step clock; the result is rewritten to ``out`` at every step, so a killed job leaves its steps."""
    from transformers import TrainerCallback, set_seed

    from alignpro.config.compose import compose_config
    from alignpro.config.validate import validate
    from alignpro.data.preferences import load_splits
    from alignpro.methods.base import Job
    from alignpro.methods.registry import build_method
    from alignpro.methods.rl import check_trainer_extra, quiet_library_noise
    from alignpro.models.assets import resolve_model
    from alignpro.models.frozen import build_frozen
    from alignpro.models.generation import GenerationEngine
    from alignpro.models.reward import build_reward
    from alignpro.run.directory import RunDir
    from alignpro.run.timing import StageTimer

    overrides = job_overrides(scale, spec)
    result: dict[str, Any] = {"overrides": overrides, "command": train_command(overrides), "status": "running",
                              "steps": []}
    t_job = time.perf_counter()
    timer = StageTimer()

    def save() -> None:
        result["timing_s"] = dict(timer.seconds)
        result["wall_s"] = time.perf_counter() - t_job
        result.update(peak_gb(scale.device))
        write_json(out, result)

    class StepClock(TrainerCallback):
        """Each optimizer step's wall time and its split by the stage timer; the result saved after each."""

        def on_step_begin(self, args, state, control, **kwargs):
            self.t, self.before = time.perf_counter(), dict(timer.seconds)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and result["steps"] and "completions/mean_length" in logs:
                result["steps"][-1]["policy_mean_tokens"] = float(logs["completions/mean_length"])
                save()

        def on_step_end(self, args, state, control, **kwargs):
            wall = time.perf_counter() - self.t
            split = {k: timer.seconds.get(k, 0.0) - self.before.get(k, 0.0)
                     for k in ("policy_generation", "frozen_generation", "reward")}
            split["logprobs_update"] = wall - sum(split.values())
            result["steps"].append({"seconds": wall, "split": split})
            save()

    try:
        # A round generates once and trains num_iterations times on it: the steps are rounds × iterations.
        iterations = int(compose_config(overrides).trainer.get("num_iterations", 1) or 1)
        overrides.append(f"trainer.max_steps={generations * iterations}")
        result["command"] = train_command(overrides)
        cfg = validate(compose_config(overrides))
        device = cfg.device
        method = cfg.method
        policy = cfg.prompter if cfg.method.name == "alignpro" else cfg.frozen
        result.update(rollouts_per_step=cfg.trainer.prompts_per_step * cfg.trainer.num_generations,
                      num_iterations=iterations, generations=generations,
                      policy_max_new_tokens=policy.max_new_tokens, answer_max_new_tokens=cfg.frozen.max_new_tokens,
                      frozen_batch_size=cfg.frozen.batch_size, policy_lora=policy.lora is not None)
        if method.trains:
            check_trainer_extra(cfg.trainer)
        quiet_library_noise()
        splits = load_splits(cfg.dataset)
        with timer("model_build"):  # random weights built and saved to the cache once (the first part pays)
            for role in ("reward", "frozen", *(("prompter",) if method.uses_prompter else ())):
                resolve_model(cfg[role].source, cfg[role].model_id, role=role)
        if device == "cuda":  # the builds' memory is not the arm's: the peak counts from here
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        set_seed(cfg.seed)
        with timer("reward_setup"):
            reward = build_reward(cfg.reward, splits.train, splits.heldout, device)
        with timer("frozen_setup"):
            frozen = build_frozen(cfg.frozen, device, engine=GenerationEngine.from_config(cfg.generation)) \
                if method.needs_frozen else None
        save()
        set_seed(cfg.seed)
        with tempfile.TemporaryDirectory(prefix="gpu-check-run-") as tmp, timer("method_total"):
            build_method(cfg.method).run(Job(cfg, splits.train, reward, frozen, RunDir(Path(tmp)), device, None, timer,
                           callbacks=(StepClock(),)))
        result["status"] = "ok"
        result.update(plan_peaks(cfg, [r["prompt"] for r in splits.train]))
    except BaseException as err:
        result["status"] = "failed"
        result["error"] = f"{type(err).__name__}: {err}"[:2000]
        result["traceback"] = traceback.format_exc()[-4000:]
        save()
        raise
    result["imported_distributions"] = imported_distributions()
    save()
    return result


def summarize_job(r: dict) -> dict:
    """Per generation round (its ``num_iterations`` optimizer steps summed): the first round (compilation, allocator
    warm-up), the steady round (median of the later ones, else the first), its stage split, one update step
    alone, tokens/s, and the peak against the plan."""
    steps = r.get("steps") or []
    if not steps:
        return r
    it = r.get("num_iterations", 1)
    rounds = [steps[i:i + it] for i in range(0, len(steps), it)]
    rounds = [g for g in rounds if len(g) == it] or rounds[:1]  # a round cut short by a timeout is not a round

    def total(g: list[dict]) -> dict:
        return {"seconds": sum(s["seconds"] for s in g),
                "split": {k: sum(s["split"][k] for s in g) for k in g[0]["split"]},
                "policy_mean_tokens": g[0].get("policy_mean_tokens", r["policy_max_new_tokens"])}

    totals = [total(g) for g in rounds]
    steady = totals[1:] or totals
    split = {k: statistics.median(t["split"][k] for t in steady) for k in totals[0]["split"]}
    n = r["rollouts_per_step"]
    policy_tokens = statistics.median(t["policy_mean_tokens"] for t in steady) * n
    updates = [s["seconds"] for g in rounds for s in g[1:]]  # steps that trained on a round's rollouts only
    summary = {"first_round_s": totals[0]["seconds"], "steady_round_s": statistics.median(t["seconds"] for t in steady),
               "steady_split_s": split, "steady_rounds": len(steady), "rounds": len(rounds),
               "update_step_s": statistics.median(updates) if updates else None,
               "policy_tokens_per_s": policy_tokens / split["policy_generation"]
               if split.get("policy_generation") else None}
    if split.get("frozen_generation"):  # nominal: random weights almost never emit EOS before the budget
        summary["frozen_tokens_per_s_nominal"] = n * r["answer_max_new_tokens"] / split["frozen_generation"]
    peak = r.get("cuda_max_memory_allocated_gb")
    plan = r.get("plan_peak_gb")
    if peak is not None and plan:
        summary["peak_vs_plan"] = (peak - plan) / plan
    r["summary"] = summary
    return r


# ---- orchestration ---------------------------------------------------------------------------------------------
def child(scale: Scale, name: str, out: Path, bandwidth: float | None, steps: int | None,
          fallback: bool = False) -> None:
    """One part, in this process: the orchestrator's ``--child`` call (a fresh process), or ``--in-process``."""
    part = next(p for p in PARTS if p.name == name)
    if part.kind == "env":
        env = part_env(scale)
        env["imported_distributions"] = imported_distributions()
        write_json(out, env)
    elif part.kind == "gen":
        def progress(row: dict) -> None:
            write_json(out, row)

        bandwidth = bandwidth or read_bandwidth(scale.device, scale.bandwidth_bytes)  # the env part failed
        row = part_gen(scale, part.spec, bandwidth, progress)
        row["imported_distributions"] = imported_distributions()
        write_json(out, row)
    else:
        spec = {**part.spec, "engine": part.spec["fallback"]} if fallback else part.spec
        run_job(scale, spec, steps or min(spec["generations"], scale.steps), out)


def run_part(part: Part, args: argparse.Namespace, scale: Scale, timeout: float, bandwidth: float | None,
             tmpdir: Path, fallback: bool = False) -> dict:
    out = tmpdir / f"{part.name}{'-fallback' if fallback else ''}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--scale", scale.name, "--child", part.name,
           "--child-out", str(out), *(["--fallback"] if fallback else [])]
    if bandwidth:
        cmd += ["--bandwidth", repr(bandwidth)]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    t = time.perf_counter()
    print(f"[gpu-check] {part.name}: {part.what} (guard {timeout:.0f} s)", flush=True)
    if args.in_process and part.kind != "env":
        # Tests only: no import per part, no guard; peak memory is then the whole process's high-water mark.
        try:
            child(scale, part.name, out, bandwidth, args.steps, fallback)
            status = "ok"
        except Exception as err:
            status = f"failed ({type(err).__name__}: {err})"[:300]
            traceback.print_exc()
    else:
        status = run_child(cmd, timeout)
    data = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    data["part_status"] = status
    data["part_wall_s"] = time.perf_counter() - t
    print(f"[gpu-check] {part.name}: {status} in {data['part_wall_s']:.1f} s", flush=True)
    return data


def run_child(cmd: list[str], timeout: float) -> str:
    """Run one part in a fresh process; its status line."""
    try:
        # Its own process group, so a timeout kills the whole part (compile workers included); the same session,
        # so whatever ends this command ends the part too.
        proc = subprocess.Popen(cmd, cwd=ROOT, process_group=0)
        rc = proc.wait(timeout=timeout)
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        status = f"timeout after {timeout:.0f} s"
    return status


def goals(results: dict, scale: Scale) -> list[dict]:
    """The three goals, each pass / fail / open (no figure yet); meaningful at paper scale on an H200 only."""
    parts = results["parts"]
    out = []
    gen = parts.get("gen_llama31_8b", {}).get("paths", {}).get("compiled")
    out.append({"goal": f"frozen 8B-shape decode step at batch 64 <= {GOAL_DECODE_MS:g} ms (our engine)",
                "figure": gen and gen["decode_ms_per_step"],
                "status": "open" if not gen else ("pass" if gen["decode_ms_per_step"] <= GOAL_DECODE_MS else "fail")})
    ours = parts.get("p2f1_alignpro_ours", {}).get("summary", {}).get("steady_round_s")
    trl = parts.get("p2f1_alignpro_trl", {}).get("summary", {}).get("steady_round_s")
    ratio = trl / ours if ours and trl else None
    out.append({"goal": f"P2-F1 Align-Pro step (one generation round and its updates) >= {GOAL_STEP_SPEEDUP:g}x "
                        "faster with our engine than with TRL's default generation", "figure": ratio,
                "status": "open" if ratio is None else ("pass" if ratio >= GOAL_STEP_SPEEDUP else "fail")})
    for name, p in parts.items():
        s = p.get("summary", {})
        if "rollouts_per_step" in p:
            rel = s.get("peak_vs_plan")
            out.append({"goal": f"{name}: peak memory within {GOAL_MEMORY_REL:.0%} of the plan", "figure": rel,
                        "status": "open" if rel is None else ("pass" if abs(rel) <= GOAL_MEMORY_REL else "fail")})
    if scale.name != "paper":  # the goals are about the paper's shapes on a GPU; tiny figures only fill the table
        for g in out:
            g["status"] = f"n/a ({scale.name} scale)"
    return out


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def markdown(results: dict) -> str:
    env = results["parts"].get("env", {})
    gpu = env.get("gpu", {}).get("name", "?")
    lines = [f"# GPU check, {results['scale']} scale: {gpu}, {results['started_utc']}", "",
             f"Versions: {json.dumps(env.get('versions', {}))}; Python {env.get('python', '?')}.",
             f"Read bandwidth (sum over {env.get('bandwidth_tensor_bytes', 0) / 2**30:.2f} GiB): "
             f"{fmt(env.get('read_bandwidth_tb_per_s'), 3)} TB/s.", "",
             f"Command: `{results['command']}`; wall {fmt(results.get('wall_s'), 0)} s.", "", "## Goals", "",
             "| goal | figure | status |", "|---|---|---|"]
    for g in results["goals"]:
        lines.append(f"| {g['goal']} | {fmt(g['figure'], 3)} | {g['status']} |")
    lines += ["", "## Training (a, b): per generation round (one generation, then num_iterations optimizer steps on "
              "it); steady = median of the rounds after the first", "",
              "| part | status | rollouts | iterations | first round s | steady round s | prompter sampling s "
              "| frozen answers s | reward s | log-probs + updates s | one update s | policy tok/s "
              "| frozen tok/s (nominal) | peak GB | plan GB |", "|---" * 15 + "|"]
    cmds = []
    for name, p in results["parts"].items():
        if "rollouts_per_step" not in p:
            continue
        s = p.get("summary", {})
        sp = s.get("steady_split_s", {})
        peak = p.get("cuda_max_memory_allocated_gb", p.get("cpu_max_rss_gb"))
        lines.append(f"| {name} | {p.get('part_status')} | {p['rollouts_per_step']} | {p.get('num_iterations')} "
                     f"| {fmt(s.get('first_round_s'))} | {fmt(s.get('steady_round_s'))} "
                     f"| {fmt(sp.get('policy_generation'))} | {fmt(sp.get('frozen_generation'))} "
                     f"| {fmt(sp.get('reward'))} | {fmt(sp.get('logprobs_update'))} | {fmt(s.get('update_step_s'))} "
                     f"| {fmt(s.get('policy_tokens_per_s'), 0)} | {fmt(s.get('frozen_tokens_per_s_nominal'), 0)} "
                     f"| {fmt(peak)} | {fmt(p.get('plan_peak_gb'))} |")
        cmds.append(f"- {name}: `{p['command']}` (training only, {len(p.get('steps', []))} optimizer steps)")
    lines += ["", "## Decoding (c): ms per decode step with the prefill taken out", "",
              "| part | path | batch | new tokens | ms/step | tok/s | floor ms/step (weights / read bw) "
              "| floor incl. KV | % of floor | warm-up s | peak GB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, p in results["parts"].items():
        for r in p.get("paths", {}).values():
            peak = r.get("cuda_max_memory_allocated_gb", r.get("cpu_max_rss_gb"))
            lines.append(f"| {name} | {r['engine']} | {p['batch']} | {p['new_tokens']} "
                         f"| {fmt(r['decode_ms_per_step'])} "
                         f"| {fmt(r['tokens_per_s'], 0)} | {fmt(p['floor_ms_per_step'])} "
                         f"| {fmt(p['floor_with_kv_ms_per_step'])} | {fmt(100 * r['fraction_of_floor'], 1)} "
                         f"| {fmt(r['warmup_s'], 1)} | {fmt(peak)} |")
        if "paths" in p:
            cmds.append(f"- {name}: `python benchmarks/gpu/check.py --scale {results['scale']} --parts {name}`")
    lines += ["", "## Parts", "", "| part | what | status | wall s | estimate on one H200 s |", "|---|---|---|---|---|"]
    for name, p in results["parts"].items():
        lines.append(f"| {name} | {p.get('what', '')} | {p.get('part_status')} | {fmt(p.get('part_wall_s'), 1)} "
                     f"| {fmt(p.get('estimate_h200_s'), 0)} |")
    lines += ["", "## Commands", "", *cmds, ""]
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> dict:
    scale = SCALES[args.scale]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget or scale.budget_s
    t0 = time.perf_counter()
    chosen = args.parts.split(",") if args.parts else PART_NAMES
    unknown = sorted(set(chosen) - set(PART_NAMES))
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; valid: {', '.join(PART_NAMES)}")
    if "env" not in chosen:
        chosen = ["env", *chosen]  # the bandwidth is every floor's denominator
    results: dict[str, Any] = {"scale": scale.name, "started_utc": now_utc(), "budget_s": budget,
                               "command": " ".join(["python", "benchmarks/gpu/check.py", *sys.argv[1:]]),
                               "scale_config": asdict(scale), "parts": {}, "goals": []}
    json_path, md_path = out / "gpu-check.json", out / "gpu-check.md"
    bandwidth = None
    guard_scale = 1 if scale.name == "paper" else 4  # the guards are sized for an H200; a CPU is slower
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for part in (p for p in PARTS if p.name in chosen):
            left = budget - (time.perf_counter() - t0)
            if left < part.min_s:
                results["parts"][part.name] = {"part_status": f"skipped: {left:.0f} s of the budget left, "
                                                              f"needs >= {part.min_s:.0f}", "what": part.what}
                continue
            data = run_part(part, args, scale, min(part.guard_s * guard_scale, left), bandwidth, Path(tmp))
            left = budget - (time.perf_counter() - t0)
            if part.kind == "job" and data["part_status"].startswith("failed") and "fallback" in part.spec \
                    and left >= part.min_s:
                first = {k: data.get(k) for k in ("part_status", "error", "overrides")}
                data = run_part(part, args, scale, min(part.guard_s * guard_scale, left), bandwidth, Path(tmp), True)
                data["first_attempt"] = first
            data["what"], data["estimate_h200_s"] = part.what, part.estimate_s
            if part.kind == "env":
                bandwidth = data.get("read_bandwidth_bytes_per_s")
            if part.kind == "job":
                summarize_job(data)
            results["parts"][part.name] = data
            results["wall_s"] = time.perf_counter() - t0
            results["goals"] = goals(results, scale)
            write_json(json_path, results)
            md_path.write_text(markdown(results), encoding="utf-8")
    results["wall_s"] = time.perf_counter() - t0
    results["finished_utc"] = now_utc()
    results["goals"] = goals(results, scale)
    write_json(json_path, results)
    md_path.write_text(markdown(results), encoding="utf-8")
    print(markdown(results), flush=True)
    return results


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", choices=tuple(SCALES), default="paper")
    ap.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results/gpu-check")
    ap.add_argument("--parts", default=None, help=f"comma-separated subset of: {', '.join(PART_NAMES)}")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole check (paper: 530)")
    ap.add_argument("--steps", type=int, default=None,
                    help="generation rounds per training part (paper: 2 on our engine, 1 on TRL's default)")
    ap.add_argument("--in-process", action="store_true",
                    help="run the parts after env in this process (the CPU test: one import instead of one per part)")
    ap.add_argument("--without", default="",
                    help="comma-separated modules to run without, as if not installed (the test: what the image lacks)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--fallback", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bandwidth", type=float, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    for name in filter(None, args.without.split(",")):
        sys.modules[name] = None  # type: ignore[assignment]  # import fails; importlib.util.find_spec says None
    if args.child:
        child(SCALES[args.scale], args.child, Path(args.child_out), args.bandwidth, args.steps, args.fallback)
        return
    scale = SCALES[args.scale]
    if scale.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--scale paper needs a CUDA GPU; use --scale tiny on a CPU")
    orchestrate(args)


if __name__ == "__main__":
    main()
