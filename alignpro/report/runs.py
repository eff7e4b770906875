"""Finished runs, read back from their directories (alignpro/run/directory.py): jobs, their configs and rewards, the
keys a
sweep varied, and rewards pooled over seeds. Every report reads runs through here; none reads live objects."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import yaml

from alignpro.report.statistics import mean, summarize
from alignpro.run.directory import RunDir, Sample, flatten
from alignpro.run.errors import BadInput


def by_prompt(samples: list[Sample]) -> dict[str, list[float]]:
    """Held-out rewards grouped by prompt x: the unit that pairs two arms (both answered the same x)."""
    out: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        out[s.x].append(s.r)
    return out


IGNORED = ("seed",)  # varied on purpose to average over, never a factor


def job_dirs(root: Path) -> list[RunDir]:
    """Every job dir under ``root``: ours (``config.yaml`` + ``run_info.json``) or Hydra's (``.hydra/``), so a job
    that failed before it wrote anything of its own still shows up, as missing."""
    ours = {p.parent for p in root.rglob("config.yaml") if RunDir(p.parent).run_info.exists()}
    hydra = {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    return [RunDir(d) for d in sorted(ours | hydra)]


def job_config(d: str | Path) -> dict:
    """A job's resolved config, flattened: our redacted copy, else Hydra's (a job that failed early)."""
    return flatten(RunDir(Path(d)).read_config())


def collect(sweep_dir: str | Path) -> tuple[list[dict], list[str]]:
    """(finished jobs, missing job dirs) of a multirun dir (or of one run dir)."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise BadInput(f"'{root}' is not a directory of runs")
    jobs, missing = [], []
    for d in job_dirs(root):
        if not d.is_finished():
            missing.append(str(d.root))
            continue
        curve = d.read_train_log()
        steps = [row for row in curve if "kl_seq" in row]
        samples = d.read_eval_samples()
        jobs.append({
            "dir": str(d.root),
            "config": flatten(d.read_config()),
            "metrics": d.read_metrics(),
            "samples": samples,
            "rewards": [s.r for s in samples],
            "by_prompt": {x: mean(v) for x, v in by_prompt(samples).items()},
            "curve": curve,
            "final_kl": steps[-1]["kl_seq"] if steps else None,
        })
    return jobs + reused_points(root, jobs), missing


def reused_points(root: Path, jobs: list[dict]) -> list[dict]:
    """The sweep's points that another job ran for them (``grid.json``, alignpro/config/preflight.py): each one's own
    config
    with that job's results, so the no-fine-tuning and oracle arms of the paper grid, run once per (frozen,
    dataset), fill the cell of every prompter."""
    from alignpro.config.preflight import GRID_FILE

    grid = root / GRID_FILE
    if not grid.exists():
        return []
    by_dir = {Path(j["dir"]).resolve(): j for j in jobs}
    out = []
    for point in json.loads(grid.read_text(encoding="utf-8"))["points"]:
        ran = by_dir.get((root / str(point["job"])).resolve())
        if point["runs"] or ran is None:
            continue  # a job of its own, or its job did not finish (listed as missing)
        config = {k: v for k, v in ran["config"].items() if k not in set(point["drops"])} | point["differs"]
        out.append({**ran, "config": config, "reused_from": ran["dir"]})
    return out


def why_missing(d: str | Path) -> str:
    """One line: the job's overrides and, when it failed, its error (``error.txt``, written by alignpro.train)."""
    files = RunDir(Path(d))
    overrides = files.hydra_overrides
    what = " ".join(yaml.safe_load(overrides.read_text()) or []) if overrides.exists() else ""
    err = files.error.read_text().strip() if files.error.exists() else ""
    reason = err.splitlines()[0] if err else "unfinished"
    return f"`{files.root}` ({what or 'defaults'}): {reason}"


def factors(jobs: list[dict]) -> list[str]:
    """Config keys whose values differ between jobs (the sweep's factors), seed excluded. Keys that split the jobs
    identically (``meta_prompt_name`` and ``meta_prompt``) count once, by their shortest values."""
    keys = set().union(*(j["config"] for j in jobs)) if jobs else set()
    varied = [k for k in sorted(keys)
              if k not in IGNORED and len({json.dumps(j["config"].get(k), sort_keys=True) for j in jobs}) > 1]
    by_partition: dict[tuple, list[str]] = defaultdict(list)
    for k in varied:
        values = [json.dumps(j["config"].get(k), sort_keys=True) for j in jobs]
        first_seen = {v: i for i, v in reversed(list(enumerate(values)))}
        by_partition[tuple(first_seen[v] for v in values)].append(k)
    chosen = [min(ks, key=lambda k: (max(len(json.dumps(j["config"].get(k))) for j in jobs), k))
              for ks in by_partition.values()]
    return sorted(chosen)


def pooled(members: list[dict], n_resamples: int = 2000) -> dict:
    """One setting's jobs (its seeds): held-out rewards pooled over them (mean with bootstrap CI, sample variance;
    D10), the seeds, and the spread of the per-seed means."""
    values = [r for j in members for r in j["rewards"]]
    s = summarize(values, n_resamples=n_resamples)
    seed_means = [j["metrics"]["reward_mean"] for j in members]
    return {"reward_mean": s["reward_mean"], "ci_low": s["reward_ci_low"], "ci_high": s["reward_ci_high"],
            "reward_var": s["reward_var"], "n": s["n"], "seeds": sorted(j["config"].get("seed") for j in members),
            "seed_spread": (max(seed_means) - min(seed_means)) if len(seed_means) > 1 else 0.0}


def sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan"
        return "0.000" if abs(v) < 5e-4 else f"{v:.3f}"  # never "-0.000"
    return str(v)


def load_runs(sweep_dir: str | Path) -> dict[str, dict[int, dict]]:
    """{arm: {seed: run}} for every finished job under ``sweep_dir`` (:func:`collect`'s jobs); each run holds its
    per-prompt mean rewards ``{x: r}``, every reward grouped by prompt, its metrics and its training curve."""
    jobs, _ = collect(sweep_dir)
    runs: dict[str, dict[int, dict]] = defaultdict(dict)
    for j in jobs:
        arm, seed = j["config"]["method.name"], j["config"].get("seed", 0)
        if seed in runs[arm]:
            raise BadInput(f"two runs of arm '{arm}' with seed {seed} under '{sweep_dir}' ({runs[arm][seed]['dir']}, "
                             f"{j['dir']}): compare one sweep at a time")
        runs[arm][seed] = {"dir": j["dir"], "rewards": j["by_prompt"],
                           "all_rewards": [r for v in by_prompt(j["samples"]).values() for r in v],
                           "metrics": j["metrics"], "curve": j["curve"], "samples": j["samples"]}
    if not runs:
        raise BadInput(f"no finished runs (with metrics.json) under '{sweep_dir}'")
    return runs
