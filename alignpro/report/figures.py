"""The paper-style figures of a comparison report: grouped bars per dataset (Figures 2–3), ours beside the paper's."""

from __future__ import annotations

import math
from pathlib import Path

from alignpro.methods.registry import METHODS
from alignpro.report.paper import paper_results
from alignpro.run.directory import save_figure

ARM_COLORS = {"no_finetune": "#8c8c8c", "fixed_instruction": "#ff7f0e", "base_prompter": "#c9b27c",
              "best_of_n": "#9467bd", "alignpro": "#1f77b4", "rlhf": "#2ca02c"}

def plot_bars(rows: list[dict], stat: str, out: Path, stem: str, title: str) -> list[str]:
    """Grouped bars, one panel per dataset (the paper's Figs 2–3): ours solid, the paper's hatched beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    datasets = list(dict.fromkeys(r["cell"]["dataset.name"] for r in rows))
    paper_key = "paper_mean" if stat == "reward_mean" else "paper_var"
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(5.0, 4.6 * len(datasets)), 4.4), squeeze=False)
    used = set()
    for ax, ds in zip(axes[0], datasets, strict=True):
        panel = [r for r in rows if r["cell"]["dataset.name"] == ds]
        series = [(arm, who) for arm in METHODS for who in ("ours", "paper")
                  if any((r["arms"].get(arm) if who == "ours" else (r[paper_key] or {}).get(arm)) is not None
                         for r in panel)]
        width = 0.8 / max(1, len(series))
        for i, (arm, who) in enumerate(series):
            xs, ys, lo, hi = [], [], [], []
            for g, r in enumerate(panel):
                if who == "ours" and arm in r["arms"]:
                    a = r["arms"][arm]
                    y = a[stat]
                    ci = (a["ci_low"], a["ci_high"]) if stat == "reward_mean" else a["var_ci"]
                    xs.append(g + (i - (len(series) - 1) / 2) * width)
                    ys.append(y)
                    lo.append(y - ci[0] if ci[0] is not None else 0)
                    hi.append(ci[1] - y if ci[1] is not None else 0)
                elif who == "paper" and (r[paper_key] or {}).get(arm) is not None:
                    xs.append(g + (i - (len(series) - 1) / 2) * width)
                    ys.append(r[paper_key][arm])
            if not xs:
                continue
            used.add((arm, who))
            kw = dict(color=ARM_COLORS[arm], width=width, edgecolor="black", linewidth=0.5)
            if who == "paper":
                kw.update(alpha=0.45, hatch="//")
            ax.bar(xs, ys, yerr=[lo, hi] if who == "ours" else None, capsize=3, **kw)
        ax.set_xticks(range(len(panel)), [r["label"] for r in panel], rotation=15 if len(panel) > 2 else 0,
                      ha="right" if len(panel) > 2 else "center")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(paper_results()["datasets"].get(ds, ds))  # the paper's dataset names
        ax.set_ylabel("mean reward" if stat == "reward_mean" else "reward variance")
    handles = [Patch(facecolor=ARM_COLORS[a], edgecolor="black", alpha=0.45 if w == "paper" else 1,
                     hatch="//" if w == "paper" else None,
                     label=f"{METHODS[a].label}{' (paper)' if w == 'paper' else ''}")
               for a in METHODS for w in ("ours", "paper") if (a, w) in used]
    ncol = min(4, len(handles)) if len(datasets) > 1 else 2  # one narrow panel: two legend columns fit
    keyed = any(r["label"][:1] == "P" and r["label"][2:4] == "-F" for r in rows)  # P1-F2-style labels: say who
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, (0.035 if len(datasets) > 1 else 0.06) if keyed else 0.0))
    if keyed:
        paper = paper_results()
        parts = ["; ".join(f"{k} = {v['paper_name']}" for k, v in paper[g].items()) for g in ("prompters", "frozen")]
        fig.text(0.5, 0.008, ("; " if len(datasets) > 1 else "\n").join(parts), fontsize=7, color="#444444",
                 ha="center")
    fig.suptitle(title)
    key_height = 0.035 * keyed * (1 if len(datasets) > 1 else 2)
    fig.tight_layout(rect=(0, 0.05 + 0.045 * math.ceil(len(handles) / ncol) + key_height, 1, 1))
    written = []
    for ext in ("png", "pdf"):
        path = out / f"{stem}.{ext}"
        save_figure(fig, path, dpi=130)
        written.append(str(path))
    plt.close(fig)
    return written
