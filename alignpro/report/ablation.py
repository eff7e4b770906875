"""An ablation report: a multirun's jobs grouped by the config keys the sweep varied (seed aside).

Each setting's held-out rewards are pooled over seeds (mean, sample variance, bootstrap 95 % CI; D10), with the seed
spread, a plot of the eval reward against the factor, and the reward–KL frontier (final training KL(ρ‖ρ_ref)
against eval reward) when the prompter was trained. Jobs without ``metrics.json`` are listed as missing.

A trained setting whose final KL(ρ‖ρ_ref) is below :data:`STILL_KL` did not move its policy away from ρ_ref: its
row says so (``moved: false``), and so does the report, since differences between such rows are sampling noise, not
the factor's effect. The report is also logged to its own W&B run (job type ``ablation``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from hydra.experimental.callback import Callback

from alignpro.report.runs import collect, factors, fmt, pooled, sort_key, why_missing
from alignpro.report.statistics import mean
from alignpro.run.directory import save_figure, write_atomic
from alignpro.run.errors import BadInput

# Nats per rewrite: below this the trained policy is ρ_ref up to numerical noise (a moved LoRA prompter reaches 0.01–1).
STILL_KL = 1e-3


def ablation_table(jobs: list[dict], by: list[str]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for j in jobs:
        groups[tuple(json.dumps(j["config"].get(k)) for k in by)].append(j)
    rows = []
    for key, members in groups.items():
        kls = [j["final_kl"] for j in members if j["final_kl"] is not None]
        shift = [j["metrics"]["answer_shift_reward"] for j in members if "answer_shift_reward" in j["metrics"]]
        rows.append({
            **{k: json.loads(v) for k, v in zip(by, key, strict=True)},
            **pooled(members),
            "final_kl_seq": mean(kls) if kls else None,
            "answer_shift_reward": mean(shift) if shift else None,
            "moved": abs(mean(kls)) >= STILL_KL if kls else None,
        })
    return sorted(rows, key=lambda r: [sort_key(r[k]) for k in by])


def markdown(rows: list[dict], by: list[str], missing: list[str], title: str) -> str:
    cols = [*by, "seeds", "reward_mean", "ci_low", "ci_high", "reward_var", "n", "seed_spread", "final_kl_seq",
            "answer_shift_reward"]
    lines = [f"# {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "Rewards pooled over seeds; 95 % percentile-bootstrap CI of the mean; variance ddof = 1; "
              "seed_spread = max − min of per-seed means; final_kl_seq = KL(ρ‖ρ_ref) per rewrite at the last "
              "training step; answer_shift_reward = r(x, y(x)) − r(x, y(x′)) (Theorem 6.1, second term)."]
    still = [r for r in rows if r["moved"] is False]
    if still:
        names = "all settings" if len(still) == len(rows) else "; ".join(", ".join(f"{k}={fmt(r[k])}" for k in by)
                                                                         for r in still)
        lines += ["", f"**The trained policy did not move** in {names}: the final KL(ρ‖ρ_ref) is below {STILL_KL:g} "
                  "nats per rewrite, so the prompter still writes what ρ_ref writes, and differences between these "
                  "rows are sampling noise, not the effect of the factor. Train longer or with a larger learning "
                  "rate before reading them."]
    if missing:
        lines += ["", "Missing (no metrics.json — failed or unfinished):", *[f"- {why_missing(m)}" for m in missing]]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], by: list[str], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    labels = [", ".join(fmt(r[k]) for k in by) for r in rows]
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
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    written.append(str(path))
    with_kl = [r for r in rows if r["final_kl_seq"] is not None]
    if with_kl:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, (r, label) in enumerate(zip(rows, labels, strict=True)):
            if r["final_kl_seq"] is not None:
                ax.errorbar(r["final_kl_seq"], r["reward_mean"],
                            yerr=[[r["reward_mean"] - r["ci_low"]], [r["ci_high"] - r["reward_mean"]]], fmt="o",
                            capsize=4)
                ax.annotate(label, (r["final_kl_seq"], r["reward_mean"]), textcoords="offset points",
                            xytext=(6, 4 + 11 * i))  # stacked: points at the same KL must not overprint
        ax.set_xlabel("KL(ρ ‖ ρ_ref) per rewrite at the last training step")
        ax.set_ylabel("held-out reward r(x, y)")
        still = all(r["moved"] is False for r in with_kl)
        ax.set_title("reward-KL frontier" + (": the policy did not move (KL ≈ 0)" if still else ""))
        fig.tight_layout()
        path = out / "reward_vs_kl.png"
        save_figure(fig, path, dpi=120)
        plt.close(fig)
        written.append(str(path))
    return written


def ablation_report(sweep_dir: str | Path, out: str | Path, by: list[str] | None = None,
                    wandb_log: bool = True) -> dict:
    jobs, missing = collect(sweep_dir)
    if not jobs:
        raise BadInput(f"no finished runs (with metrics.json) under '{sweep_dir}'")
    by = by or factors(jobs) or ["method.name"]
    unknown = [k for k in by if not any(k in j["config"] for j in jobs)]
    if unknown:
        raise BadInput(f"--by {' '.join(unknown)} is not a key of the runs' configs; valid: the keys the sweep varied "
                       f"({', '.join(factors(jobs)) or 'none'}) or another dotted key of a run's config.yaml")
    rows = ablation_table(jobs, by)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "report.md", markdown(rows, by, missing, f"Ablation: {' × '.join(by)} ({sweep_dir})"))
    write_atomic(out / "table.json", json.dumps(rows, indent=2, default=str))
    figures = plot(rows, by, out)
    res = {"by": by, "rows": rows, "missing": missing, "figures": figures, "report": str(out / "report.md")}
    if wandb_log:
        res["wandb"] = log_ablation(out, rows, figures, name=f"ablation:{Path(sweep_dir).name}")
    return res


def log_ablation(out: Path, rows: list[dict], figures: list[str], name: str) -> str | None:
    """The ablation's own W&B run (job type ``ablation``): its table and figures, offline unless the environment
    says otherwise, like the training runs."""
    import os

    import wandb

    from alignpro.run.tracking import wandb_mode

    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project="alignpro", job_type="ablation", name=name, group="reports", dir=str(out),
                     mode=wandb_mode(), reinit="finish_previous")
    cols = list(rows[0])
    run.log({"ablation/table": wandb.Table(columns=cols, data=[[json.dumps(r[c]) if isinstance(r[c], (list, dict))
                                                                  else r[c] for c in cols] for r in rows]),
             **{f"ablation/{Path(f).stem}": wandb.Image(f) for f in figures if f.endswith(".png")}})
    where = str(Path(run.dir).parent) if run.settings.mode == "offline" else run.url
    run.finish()
    return where


class AblationCallback(Callback):
    """``hydra.callbacks.<key>._target_: alignpro.report.ablation.AblationCallback``: after the sweep's last job,
    the ablation report in ``<sweep dir>/report`` (and its W&B run when the jobs log to W&B)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            res = ablation_report(sweep_dir, sweep_dir / "report",
                                  wandb_log=config.get("logger", {}).get("backend") == "wandb")
        except BadInput as err:  # no finished runs: the sweep's own jobs said why
            print(f"alignpro: {err}")
            return
        print("\n" + Path(res["report"]).read_text(encoding="utf-8"))

