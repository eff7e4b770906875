"""A report's W&B run (job type ``report``): its tables and figures, offline unless the environment says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from alignpro.methods.registry import METHODS


def log_report(out: Path, rows: list[dict], figures: list[str], name: str, project: str = "alignpro") -> str | None:
    """Log the report to its own W&B run (job_type ``report``): Table 1 and the cell table as W&B tables, the
    figures as images. Offline unless WANDB_API_KEY / WANDB_MODE say otherwise, like the training runs."""
    import wandb

    from alignpro.run.tracking import wandb_mode

    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project=project, job_type="report", name=name, group="reports", dir=str(out),
                     mode=wandb_mode(), reinit="finish_previous")
    cols = ["dataset", "cell", "arm", "reward_mean", "ci_low", "ci_high", "reward_var", "n", "paper_mean",
            "paper_var"]
    data = [[r["cell"]["dataset.name"], r["label"], arm, a.get("reward_mean"), a.get("ci_low"), a.get("ci_high"),
             a.get("reward_var"), a.get("n"), (r["paper_mean"] or {}).get(arm), (r["paper_var"] or {}).get(arm)]
            for r in rows for arm in METHODS for a in [r["arms"].get(arm, {})]
            if a or (r["paper_mean"] or {}).get(arm) is not None]
    t1 = [[r["cell"]["dataset.name"], r["label"], *(r["judge"][k] if r.get("judge") else None
                                                   for k in ("win", "tie", "loss", "position_consistency")),
           *((r["paper_table1"] or {}).get(k) for k in ("win", "tie", "loss"))] for r in rows]
    run.log({"report/cells": wandb.Table(columns=cols, data=data),
             "report/table1": wandb.Table(columns=["dataset", "cell", "win", "tie", "loss", "position_consistency",
                                                    "paper_win", "paper_tie", "paper_loss"], data=t1),
             **{f"report/{Path(f).stem}": wandb.Image(f) for f in figures if f.endswith(".png")}})
    offline = run.settings.mode == "offline"
    where = str(Path(run.dir).parent) if offline else run.url
    run.finish()
    return where
