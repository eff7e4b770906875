"""The plan as text (the jobs table, the memory table, each arm's stages), as JSON, and docs/memory-plan.md's table."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from alignpro.tools.plan.cost import ANCHOR_GPU, ESTIMATE_NOTE, MS_PER_LAYER_STEP
from alignpro.tools.plan.jobs import Job, plan
from alignpro.tools.plan.memory import ArmPlan

GB = 1e9


def gb(b: float) -> str:
    """Bytes as GB (1e9) with one decimal; a small model's MB or kB keep their digits."""
    if b >= 0.05 * GB or b == 0:
        return f"{b / GB:.1f} GB"
    return f"{b / 1e6:.1f} MB" if b >= 1e5 else f"{b / 1e3:.1f} kB"


def arm_label(p: ArmPlan) -> str:
    return " ".join([p.method, *(v for v in p.models.values() if v != "-")])


def memory_table(arms: list[ArmPlan]) -> str:
    """One row per arm: persistent memory, each stage's total, the peak and the stage it is in (GB = 1e9 bytes)."""
    names = ["rollout", "frozen answers", "scoring", "update", "evaluation"]
    head = ["arm (method prompter frozen reward)", "trained (P / trainable)", "weights + state",
            *names, "peak"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in arms:
        trained = next((s for r, s in p.shapes.items() if s.trainable and r != "reward"), None)
        what = "-" if trained is None else f"{_count(trained.params)} / " + (
            "all" if trained.trainable == trained.params else _count(trained.trainable))
        by = {s.name: gb(p.base + s.transient) for s in p.stages}
        cells = [arm_label(p), what, gb(p.base), *(by.get(n, "-") for n in names),
                 f"**{gb(p.peak)}** ({p.peak_stage.name})"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n:,}"


def jobs_table(result: dict) -> str:
    jobs: list[Job] = result["jobs"]
    varying = _varying(jobs)
    rows = ["| job | overrides | run dir | peak GB (stage) | GPU-h |", "|---|---|---|---|---|"]
    for j in jobs:
        shown = ",".join(o for o in j.overrides if o in varying) or ",".join(j.overrides) or "defaults"
        if not j.runs:
            rows.append(f"| ({j.job}) | {shown} | reused: job {j.job}'s {j.run_dir} | - | - |")
            continue
        p = j.plan
        hours = "-" if p.hours is None else f"{p.hours:.2f}"
        rows.append(f"| {j.job} | {shown} | {j.run_dir} | {gb(p.peak)} ({p.peak_stage.name}) | {hours} |")
    return "\n".join(rows)


def _varying(jobs: list[Job]) -> set[str]:
    every = [set(j.overrides) for j in jobs]
    common = set.intersection(*every) if every else set()
    return set().union(*every) - common if len(jobs) > 1 else set().union(*every)


def arm_details(p: ArmPlan, jobs: list[int] | None = None) -> str:
    shown = f" (job{'s' if len(jobs or []) > 1 else ''} {', '.join(map(str, jobs))})" if jobs else ""
    lines = [f"### {arm_label(p)}{shown}"]
    for role, s in p.shapes.items():
        lora = ", ".join(f"{n} x{c}" for n, c in s.lora_modules)
        trainable = f", trainable {s.trainable:,}" + (f" (LoRA on {lora})" if lora else "") if s.trainable else ""
        lines.append(f"  {role}: {s.model_id} ({s.architecture}) {s.params:,} params{trainable}; KV "
                     f"{s.kv_bytes_per_token() / 1024:g} KiB/token (bf16), context {s.context}")
    lines.append("  persistent: " + "; ".join(f"{w} {gb(b)}" for w, b in p.persistent) + f" = {gb(p.base)}")
    for s in p.stages:
        items = (" | " if s.sequential else "; ").join(f"{w} {gb(b)}" for w, b in s.items)
        lines.append(f"  {s.name:<15} +{gb(s.transient):>9} = {gb(p.base + s.transient):>9}  ({items})")
    lines.append(f"  peak {gb(p.peak)} in {p.peak_stage.name}")
    cuts = [c for c in p.checks if c.status != "ok"]
    lines.append("  context: " + ("; ".join(f"{c.stage} ({c.model}): {c.status}" for c in p.checks) if cuts else
                                  f"every stage fits (x up to {min(c.x_budget for c in p.checks):,} tokens)"))
    if p.hours is not None:
        terms = ", ".join(f"{k} {v / 3600:.2f}" for k, v in p.time_terms.items())
        steps = f"{p.steps['updates']} updates, {p.steps['generations']} generations; " if p.steps else ""
        first = f"job {jobs[0]}: " if jobs and len(jobs) > 1 else ""
        lines.append(f"  GPU-hours {first}{p.hours:.2f} ({steps}{terms}; {ESTIMATE_NOTE})")
    return "\n".join(lines)


def render(result: dict) -> str:
    jobs: list[Job] = result["jobs"]
    info = result["info"]
    arms = list(result["arms"].values())
    running = [j for j in jobs if j.runs]
    out = []
    if info["searches"]:  # Optuna & co.: the trials are chosen as the search goes
        trials = info.get("n_trials")
        out.append(f"{info['sweeper'].rsplit('.', 1)[-1]} would run {trials or 'its'} trials, chosen as it goes: each "
                   "is planned below with the values it does not search; sweep dir "
                   f"{Path(jobs[0].run_dir).parent}, W&B group {jobs[0].group}")
    elif info["sweep"]:
        head = f"{len(running)} job{'s' if len(running) != 1 else ''} would be launched"
        if len(running) != len(jobs):
            head += f" ({len(jobs) - len(running)} grid points reuse another job's result)"
        out.append(f"{head}; sweep dir {Path(jobs[0].run_dir).parent}, W&B group {jobs[0].group}")
    else:
        out.append(f"one run: run dir {jobs[0].run_dir}, W&B group {jobs[0].group}")
    common = sorted(set.intersection(*(set(j.overrides) for j in jobs))) if len(jobs) > 1 else []
    if common:
        out.append(f"every job: {','.join(common)}")
    out += ["", jobs_table(result), ""]
    total = sum(j.plan.hours for j in running if j.plan.hours is not None)
    if not any(j.plan.hours is not None for j in running):
        out.append("no GPU-hours: the jobs run on device=cpu")
    else:
        digits = 1 if total >= 1 else 2
        out.append(f"GPU-hours in all: {total:.{digits}f} on one {ANCHOR_GPU} per job ({ESTIMATE_NOTE}: "
                   f"{MS_PER_LAYER_STEP:.2f} ms per layer and decode step, eager generate(), every generation at "
                   "its max_new_tokens)")
    for note in dict.fromkeys(n for j in running for n in j.plan.notes):
        out.append(f"note: {note}")
    where = "one GPU" if any(j.plan.hours is not None for j in running) else "the host (device=cpu)"
    out += ["", f"Memory per arm on {where}: weights + state, and the total at each stage (GB = 1e9 bytes; x = "
            f"{result['prompt_tokens']} tokens, --prompt-tokens; a | b: one after another, the stage needs the "
            "larger):", "",
            memory_table(arms), ""]
    out += [arm_details(p, result["arm_jobs"].get(sig)) for sig, p in result["arms"].items()]
    return "\n".join(out)


def as_json(result: dict) -> dict:
    def arm(p: ArmPlan) -> dict:
        return {"key": p.key, "method": p.method, "models": p.models, "peak_gb": p.peak / GB,
                "peak_stage": p.peak_stage.name, "persistent": [[w, b / GB] for w, b in p.persistent],
                "stages": {s.name: {"total_gb": (p.base + s.transient) / GB, "sequential": s.sequential,
                                    "items": [[w, b / GB] for w, b in s.items]} for s in p.stages},
                "context": [{**asdict(c), "x_budget": c.x_budget, "status": c.status} for c in p.checks],
                "shapes": {r: asdict(s) for r, s in p.shapes.items()}, "gpu_hours": p.hours,
                "gpu_hours_terms": {k: v / 3600 for k, v in p.time_terms.items()}, "steps": p.steps,
                "notes": p.notes}

    return {"note": ESTIMATE_NOTE, "prompt_tokens": result["prompt_tokens"], "sweep": result["info"]["sweep"],
            "jobs": [{"job": j.job, "runs": j.runs, "overrides": j.overrides, "run_dir": j.run_dir,
                      "wandb_group": j.group, "arm": j.plan.key if j.plan else None,
                      "peak_gb": j.plan.peak / GB if j.plan else None,
                      "gpu_hours": j.plan.hours if j.plan else None} for j in result["jobs"]],
            "arms": [arm(p) for p in result["arms"].values()]}


# -- docs/memory-plan.md's memory table (the README links it) -------------------------------------------------------

README_COMMAND = "python -m alignpro.tools.plan experiment=paper/grid"
README_START, README_END = "<!-- plan:start -->", "<!-- plan:end -->"


def readme_block(result: dict | None = None) -> str:
    """The memory table of docs/memory-plan.md: the paper grid's arms, as :data:`README_COMMAND` prints them."""
    result = result or plan(README_COMMAND.split()[3:])
    return f"`{README_COMMAND}` prints (x = {result['prompt_tokens']} tokens):\n\n" + \
        memory_table(list(result["arms"].values()))
