"""Reports from finished runs. Reads run dirs only (``config.yaml``, ``metrics.json``, ``eval_samples.jsonl``,
``train_log.jsonl``); never live objects.

    python -m alignpro.report outputs/multiruns/<date>/<time> --out reports/lam

An ablation report groups a multirun's jobs by the config keys the sweep varied (seed aside), pools each setting's
held-out rewards over seeds (mean, sample variance, bootstrap 95 % CI; D10), gives the seed spread, and plots the
eval reward against the factor, plus the reward–KL frontier (final training KL(ρ‖ρ_ref) against eval reward)
when the prompter was trained. Jobs without ``metrics.json`` (failed or unfinished) are listed as missing.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import yaml

from alignpro.metrics import mean, summarize

IGNORED = ("seed",)  # varied on purpose to average over, never a factor


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def collect(sweep_dir: str | Path) -> tuple[list[dict], list[str]]:
    """(finished jobs, missing job dirs) of a multirun dir (or of one run dir)."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"'{root}' is not a directory of runs")
    dirs = sorted({p.parent for p in root.rglob("config.yaml") if (p.parent / "run_info.json").exists()})
    jobs, missing = [], []
    for d in dirs:
        if not (d / "metrics.json").exists():
            missing.append(str(d))
            continue
        curve = [row for row in read_jsonl(d / "train_log.jsonl") if "kl_seq" in row]
        jobs.append({
            "dir": str(d),
            "config": flatten(yaml.safe_load((d / "config.yaml").read_text())),
            "metrics": json.loads((d / "metrics.json").read_text()),
            "rewards": [row["r"] for row in read_jsonl(d / "eval_samples.jsonl")],
            "final_kl": curve[-1]["kl_seq"] if curve else None,
        })
    return jobs, missing


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


def ablation_table(jobs: list[dict], by: list[str]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for j in jobs:
        groups[tuple(json.dumps(j["config"].get(k)) for k in by)].append(j)
    rows = []
    for key, members in groups.items():
        pooled = [r for j in members for r in j["rewards"]]
        s = summarize(pooled, n_resamples=2000)
        seed_means = [j["metrics"]["reward_mean"] for j in members]
        kls = [j["final_kl"] for j in members if j["final_kl"] is not None]
        shift = [j["metrics"]["answer_shift_reward"] for j in members if "answer_shift_reward" in j["metrics"]]
        rows.append({
            **{k: json.loads(v) for k, v in zip(by, key, strict=True)},
            "seeds": sorted(j["config"].get("seed") for j in members),
            "reward_mean": s["reward_mean"], "ci_low": s["reward_ci_low"], "ci_high": s["reward_ci_high"],
            "reward_var": s["reward_var"], "n": s["n"],
            "seed_spread": (max(seed_means) - min(seed_means)) if len(seed_means) > 1 else 0.0,
            "final_kl_seq": mean(kls) if kls else None,
            "answer_shift_reward": mean(shift) if shift else None,
        })
    return sorted(rows, key=lambda r: [_sort_key(r[k]) for k in by])


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if math.isfinite(v) else "nan"
    return str(v)


def markdown(rows: list[dict], by: list[str], missing: list[str], title: str) -> str:
    cols = [*by, "seeds", "reward_mean", "ci_low", "ci_high", "reward_var", "n", "seed_spread", "final_kl_seq",
            "answer_shift_reward"]
    lines = [f"# {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "Rewards pooled over seeds; 95 % percentile-bootstrap CI of the mean; variance ddof = 1; "
              "seed_spread = max − min of per-seed means; final_kl_seq = KL(ρ‖ρ_ref) per rewrite at the last "
              "training step; answer_shift_reward = r(x, y(x)) − r(x, y(x′)) (Theorem 6.1, second term)."]
    if missing:
        lines += ["", "Missing (no metrics.json — failed or unfinished):", *[f"- `{m}`" for m in missing]]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], by: list[str], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    labels = [", ".join(_fmt(r[k]) for k in by) for r in rows]
    numeric = len(by) == 1 and all(isinstance(r[by[0]], (int, float)) for r in rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [r[by[0]] for r in rows] if numeric else list(range(len(rows)))
    ys = [r["reward_mean"] for r in rows]
    err = [[y - r["ci_low"] for y, r in zip(ys, rows, strict=True)],
           [r["ci_high"] - y for y, r in zip(ys, rows, strict=True)]]
    ax.errorbar(xs, ys, yerr=err, fmt="o-" if numeric else "o", capsize=4)
    if numeric and by[0] == "lam":
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(xs, labels, rotation=20, ha="right")
    ax.set_xlabel(" × ".join(by))
    ax.set_ylabel("held-out reward r(x, y) (95 % CI)")
    ax.set_title(f"eval reward vs {' × '.join(by)}")
    fig.tight_layout()
    path = out / "reward_vs_factor.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(str(path))
    with_kl = [r for r in rows if r["final_kl_seq"] is not None]
    if with_kl:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for r, label in zip(rows, labels, strict=True):
            if r["final_kl_seq"] is not None:
                ax.errorbar(r["final_kl_seq"], r["reward_mean"],
                            yerr=[[r["reward_mean"] - r["ci_low"]], [r["ci_high"] - r["reward_mean"]]], fmt="o",
                            capsize=4)
                ax.annotate(label, (r["final_kl_seq"], r["reward_mean"]), textcoords="offset points",
                            xytext=(6, 4))
        ax.set_xlabel("KL(ρ ‖ ρ_ref) per rewrite at the last training step")
        ax.set_ylabel("held-out reward r(x, y)")
        ax.set_title("reward-KL frontier")
        fig.tight_layout()
        path = out / "reward_vs_kl.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(str(path))
    return written


def ablation_report(sweep_dir: str | Path, out: str | Path, by: list[str] | None = None) -> dict:
    jobs, missing = collect(sweep_dir)
    if not jobs:
        raise ValueError(f"no finished runs (with metrics.json) under '{sweep_dir}'")
    by = by or factors(jobs) or ["method.name"]
    unknown = [k for k in by if not any(k in j["config"] for j in jobs)]
    if unknown:
        raise ValueError(f"--by {unknown} not in the runs' configs; varied keys: {', '.join(factors(jobs))}")
    rows = ablation_table(jobs, by)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(rows, by, missing, f"Ablation: {' × '.join(by)} ({sweep_dir})"))
    (out / "table.json").write_text(json.dumps(rows, indent=2, default=str))
    figures = plot(rows, by, out)
    return {"by": by, "rows": rows, "missing": missing, "figures": figures, "report": str(out / "report.md")}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m alignpro.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", help="a multirun dir (outputs/multiruns/<date>/<time>) or any dir of run dirs")
    ap.add_argument("--out", required=True, help="where report.md, table.json and the PNGs go")
    ap.add_argument("--by", nargs="*", default=None, help="factor keys (default: the keys the sweep varied)")
    args = ap.parse_args(argv)
    try:
        res = ablation_report(args.runs, args.out, args.by)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"alignpro.report: {err}") from None
    print(Path(res["report"]).read_text())
    print("figures:", ", ".join(res["figures"]))
    return res


if __name__ == "__main__":
    main()
