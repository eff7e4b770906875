"""The arms side by side on the same held-out prompts, with paired statistics: what `make demo` ends with.

    python -m alignpro.train --multirun experiment=demo          # the arms, then this comparison (Hydra callback)
    python -m alignpro.report.compare outputs/demo/<time>               # the same from any multirun of the arms

Every arm answers the same held-out prompts (the split is fixed by ``dataset.split_seed``), so arms are compared
**paired**: per prompt x (and seed), the difference of the two arms' rewards r(x, y), averaged over the prompt's
samples, then a percentile bootstrap over those pairs (:func:`alignpro.report.statistics.paired_difference`). The
prompts'
own difficulty cancels, so the paired interval is much tighter than two overlapping per-arm intervals suggest.
Runs pair by seed when both arms have it; a run without a partner seed is left out of that pair.

Writes into the sweep dir: ``comparison.json`` (per arm: mean, bootstrap 95 % interval, n; per pair of arms:
the paired difference, its interval, n pairs), ``comparison.md`` and ``comparison.png`` (reward per arm with
intervals; Align-Pro's training reward and KL(ρ‖ρ_ref) per step), logs them to a W&B run of type ``comparison``,
and prints the table and one plain sentence. Where the prompts have kinds (``dataset=context``) the report adds the
arm × kind rewards, what each prompter arm added to x per kind, how often it added its kind's best instruction
(found on train prompts by the fixed_instruction arm's menu scores), and a row of panels, one per kind, with the
share of each text in Align-Pro's training rewrites step by step: whether it learns one instruction or one per kind.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

from hydra.experimental.callback import Callback

from alignpro.methods.registry import METHODS
from alignpro.report.runs import load_runs
from alignpro.report.statistics import mean, paired_difference, summarize
from alignpro.run.directory import RunDir, save_figure, write_atomic
from alignpro.run.errors import ArgumentParser, BadInput, run_cli

# (a, b) pairs reported as a − b, in this order, when both arms ran.
PAIRS = (("alignpro", "no_finetune"), ("alignpro", "fixed_instruction"), ("alignpro", "base_prompter"),
         ("alignpro", "best_of_n"),
         ("rlhf", "alignpro"), ("rlhf", "no_finetune"), ("base_prompter", "no_finetune"),
         ("fixed_instruction", "no_finetune"), ("trained", "no_finetune"))
SHARE_WINDOW = 8  # steps pooled per point of the per-kind training panel: a step of 4 prompts has ~1.3 of each kind
MAX_LINES = 6  # texts drawn per kind panel; the rest is "other"


def description(arm: str) -> str:
    """How the comparison table names an arm (the registry's description; an unknown arm by its name)."""
    return METHODS[arm].description if arm in METHODS else arm


def paired(runs_a: dict[int, dict], runs_b: dict[int, dict], n_resamples: int = 2000) -> dict | None:
    """a − b over (seed, prompt) pairs that both arms answered."""
    a, b = [], []
    for seed in sorted(set(runs_a) & set(runs_b)):
        ra, rb = runs_a[seed]["rewards"], runs_b[seed]["rewards"]
        for x in ra:
            if x in rb:
                a.append(ra[x])
                b.append(rb[x])
    if not a:
        return None
    return paired_difference(a, b, n_resamples) | {"seeds": sorted(set(runs_a) & set(runs_b))}


def comparison(runs: dict[str, dict[int, dict]], n_resamples: int = 2000) -> dict:
    arms = {}
    order = list(METHODS)
    for arm in sorted(runs, key=lambda a: order.index(a) if a in order else len(order)):
        values = [r for run in runs[arm].values() for r in run["all_rewards"]]
        s = summarize(values, n_resamples=n_resamples)
        arms[arm] = {"mean": s["reward_mean"], "ci_low": s["reward_ci_low"], "ci_high": s["reward_ci_high"],
                     "var": s["reward_var"], "n": s["n"], "seeds": sorted(runs[arm])}
        if arm == "base_prompter" or arm == "alignpro":
            rates = [run["metrics"].get("menu_rate") for run in runs[arm].values()]
            if all(isinstance(v, (int, float)) for v in rates):
                arms[arm]["menu_rate"] = mean(rates)
    pairs = {f"{a} - {b}": p for a, b in PAIRS if a in runs and b in runs
             for p in [paired(runs[a], runs[b], n_resamples)] if p}
    res = {"arms": arms, "pairs": pairs, "sentence": sentence(pairs)}
    kinds = per_kind(runs)
    if kinds:
        res["kinds"] = kinds
    return res


def added_text(x: str, x_prime: str | None) -> str:
    """What a rewrite added to x: the instruction of an ``append`` prompter, else the whole rewrite."""
    if x_prime is None:
        return "(x itself)"
    return x_prime[len(x):].strip() if x_prime.startswith(x) else x_prime.strip()


def per_kind(runs: dict[str, dict[int, dict]]) -> dict:
    """Where the held-out prompts have kinds (``dataset=context``): per arm and kind, the mean reward (all seeds) and
    what the arm's rewrites added to x, counted (the per-query story: one instruction for all, or one per kind)."""
    out: dict = {}
    for arm, by_seed in runs.items():
        samples = [s for run in by_seed.values() for s in run.get("samples", ())]
        kinds = list(dict.fromkeys(s.kind for s in samples if s.kind is not None))
        if not kinds:
            return {}
        out[arm] = {}
        for kind in kinds:
            mine = [s for s in samples if s.kind == kind]
            written = Counter(added_text(s.x, s.x_prime) for s in mine)
            out[arm][kind] = {"mean": mean([s.r for s in mine]), "n": len(mine), "written": dict(written.most_common())}
    return out


def kinds_best(runs: dict[str, dict[int, dict]]) -> dict[str, str]:
    """Each kind's best menu instruction on the train prompts: the fixed_instruction arm's menu scores per kind
    (``selection.json``), averaged over its seeds; {} without them. Found without a held-out prompt."""
    scores: dict = defaultdict(lambda: defaultdict(list))
    for run in runs.get("fixed_instruction", {}).values():
        selection = RunDir(run["dir"]).read_selection() if "dir" in run else None
        for row in (selection or {}).get("menu", []):
            for kind, value in row.get("by_kind", {}).items():
                scores[kind][row["instruction"]].append(value)
    return {kind: max(by, key=lambda i: mean(by[i])) for kind, by in scores.items()}


def kind_match(kinds: dict, best: dict[str, str]) -> dict:
    """Per prompter arm: the share of its held-out rewrites, per kind and over all, that add exactly that kind's best
    instruction (a per-query prompter should match it on most prompts; a fixed one on one kind's at most)."""
    out = {}
    for arm, by_kind in kinds.items():
        cells = {k: (c["written"].get(best[k], 0), c["n"]) for k, c in by_kind.items() if k in best}
        if not cells or all(list(c["written"]) == ["(x itself)"] for c in by_kind.values()):
            continue  # no kind's best known, or the arm answers x directly
        out[arm] = {k: hit / n for k, (hit, n) in cells.items()}
        out[arm]["all"] = sum(h for h, _ in cells.values()) / sum(n for _, n in cells.values())
    return out


def training_by_kind(runs: dict[str, dict[int, dict]]) -> dict:
    """Where the train prompts have kinds: per kind and step, what Align-Pro's training rewrites added to x, counted
    over its seeds. The per-query story as it is learned: one instruction for all kinds, or one per kind."""
    out: dict = defaultdict(lambda: defaultdict(Counter))
    for run in runs.get("alignpro", {}).values():
        if not any(s.kind for s in run.get("samples", ())):  # the held-out samples say whether x has kinds
            continue  # a world without kinds: its training samples are not read
        files = RunDir(run["dir"])
        samples = files.read_samples()
        if samples and all(s.kind is None for s in samples):
            kinds = packaged_kinds(files)
            samples = [dataclasses.replace(s, kind=kinds.get(s.x)) for s in samples]
        for s in samples:
            if s.kind is not None:
                out[s.kind][s.step][added_text(s.x, s.x_prime)] += 1
    return {kind: {step: dict(c) for step, c in sorted(by_step.items())} for kind, by_step in out.items()}


def packaged_kinds(files: RunDir) -> dict[str, str]:
    """x → kind from the run's dataset where it ships inside the package (``source: embedded``), for training samples
    written without their kind; {} for a file or hub dataset (a report does not download data)."""
    dataset = files.read_config().get("dataset") or {}
    if dataset.get("source") != "embedded":
        return {}
    from omegaconf import OmegaConf

    from alignpro.data.preferences import load_splits

    splits = load_splits(OmegaConf.create(dataset))
    return {r["prompt"]: r["kind"] for r in splits.train + splits.heldout if r.get("kind")}


def pooled_shares(by_step: dict, window: int = SHARE_WINDOW) -> tuple[list[int], dict[str, list[float]]]:
    """Each step's share of every text, pooled over the ``window`` steps up to it (a step alone sees ~5 rewrites of a
    kind); texts that never reach 10 % of a full window, or beyond the ``MAX_LINES`` highest peaks, are summed as
    "other"."""
    steps = sorted(by_step, key=int)
    pooled = [sum((Counter(by_step[t]) for t in steps[max(0, i - window + 1):i + 1]), Counter())
              for i in range(len(steps))]
    shares = [{text: n / sum(c.values()) for text, n in c.items()} for c in pooled]
    full = shares[window - 1:] or shares  # the early points pool fewer steps: a text must reach 10 % in a full one
    peak = {t: max(sh.get(t, 0) for sh in full) for t in dict.fromkeys(t for sh in shares for t in sh)}
    kept = [t for t in peak if peak[t] >= 0.1 and t in sorted(peak, key=peak.get, reverse=True)[:MAX_LINES]]
    lines = {t: [sh.get(t, 0.0) for sh in shares] for t in kept}
    if any(t not in kept for sh in shares for t in sh):
        lines["other"] = [1 - sum(sh.get(t, 0.0) for t in kept) for sh in shares]
    return [int(t) + 1 for t in steps], lines


def sentence(pairs: dict) -> str:
    """One plain sentence: did Align-Pro beat the frozen model answering directly?"""
    p = pairs.get("alignpro - no_finetune")
    if p is None:
        return "No Align-Pro and no-fine-tuning runs on shared prompts: nothing to compare."
    ci = f"95 % interval [{p['diff_ci_low']:+.2f}, {p['diff_ci_high']:+.2f}]"
    head = (f"Align-Pro {'beat' if p['diff_mean'] > 0 else 'did not beat'} the frozen model answering directly by "
            f"{p['diff_mean']:+.2f} reward ({ci}, {p['n_pairs']} paired prompts)")
    if p["diff_ci_low"] > 0:
        return head + "; the interval excludes 0."
    if p["diff_ci_high"] < 0:
        return head + "; it is worse, and the interval excludes 0."
    return head + "; the interval includes 0, so this run cannot tell them apart."


def markdown(res: dict, where: str) -> str:
    lines = [f"# Align-Pro vs baselines ({where})", "", "| arm | mean r(x, y) | 95 % CI | n | seeds |",
             "|---|---|---|---|---|"]
    for arm, a in res["arms"].items():
        lines.append(f"| {description(arm)} | {a['mean']:.2f} | [{a['ci_low']:.2f}, {a['ci_high']:.2f}] | "
                     f"{a['n']} | {', '.join(map(str, a['seeds']))} |")
    lines += ["", "| paired difference | mean | 95 % CI | pairs | a better |", "|---|---|---|---|---|"]
    for name, p in res["pairs"].items():
        lines.append(f"| {name.replace(' - ', ' − ')} | {p['diff_mean']:+.2f} | [{p['diff_ci_low']:+.2f}, "
                     f"{p['diff_ci_high']:+.2f}] | {p['n_pairs']} | {p['share_a_better']:.0%} |")
    if "kinds" in res:
        lines += ["", *kind_markdown(res["kinds"])]
    if res.get("kind_best"):
        lines += ["", *match_markdown(res["kind_best"])]
    if res.get("training_by_kind"):
        lines += ["", *training_markdown(res["training_by_kind"])]
    return "\n".join(lines + ["", res["sentence"], ""])


def kind_markdown(kinds: dict) -> list[str]:
    """Arm × kind mean reward, then what each prompter arm added to x per kind (its two most frequent texts)."""
    names = list(dict.fromkeys(k for by_kind in kinds.values() for k in by_kind))
    lines = ["| arm | " + " | ".join(f"{k}" for k in names) + " |", "|---|" + "---|" * len(names)]
    for arm, by_kind in kinds.items():
        lines.append(f"| {description(arm)} | " + " | ".join(
            f"{by_kind[k]['mean']:.2f} (n={by_kind[k]['n']})" if k in by_kind else "—" for k in names) + " |")
    lines += ["", "| arm | kind | what it added to x (count of the kind's answers) |", "|---|---|---|"]
    for arm, by_kind in kinds.items():
        if list(next(iter(by_kind.values()))["written"]) == ["(x itself)"]:
            continue  # the arm answers x directly
        for kind, cell in by_kind.items():
            top = list(cell["written"].items())[:2]
            rest = cell["n"] - sum(c for _, c in top)
            shown = "; ".join(f'"{t}" {c}' for t, c in top) + (f"; other {rest}" if rest else "")
            lines.append(f"| {description(arm)} | {kind} | {shown} |")
    return lines


def match_markdown(kind_best: dict) -> list[str]:
    """Each kind's best instruction on train prompts, then per prompter arm the share of held-out rewrites adding it."""
    best = kind_best["best"]
    lines = ["Each kind's best instruction on the train prompts (fixed_instruction's menu scores): " + "; ".join(
             f'{k} "{i}"' for k, i in best.items()) + ".", "",
             "| arm: share of held-out rewrites adding the kind's best | " + " | ".join(best) + " | all |",
             "|---|" + "---|" * (len(best) + 1)]
    for arm, shares in kind_best["match"].items():
        lines.append(f"| {description(arm)} | " + " | ".join(
            f"{shares[k]:.0%}" if k in shares else "—" for k in best) + f" | {shares['all']:.0%} |")
    return lines


def training_markdown(by_kind: dict) -> list[str]:
    """What Align-Pro's training rewrites added to x per kind, in the first and the last quarter of its steps."""
    lines = ["| kind | Align-Pro's training rewrites, first quarter of the steps | last quarter |", "|---|---|---|"]
    for kind, by_step in by_kind.items():
        steps = sorted(by_step, key=int)
        quarter = max(1, len(steps) // 4)
        cells = []
        for part in (steps[:quarter], steps[-quarter:]):
            counts = sum((Counter(by_step[t]) for t in part), Counter())
            total = sum(counts.values())
            cells.append("; ".join(f'"{t}" {n / total:.0%}' for t, n in counts.most_common(2)))
        lines.append(f"| {kind} | {cells[0]} | {cells[1]} |")
    return lines


def plot(res: dict, runs: dict[str, dict[int, dict]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds, training = res.get("kinds"), res.get("training_by_kind")
    n_rows = 2 if training else 1  # the second row: one panel per kind of Align-Pro's training rewrites
    fig, grid = plt.subplots(n_rows, 3 if kinds else 2, figsize=(16 if kinds else 11, 4 * n_rows), squeeze=False)
    axes = grid[0]
    ax, ax2 = axes[0], axes[1]
    names = list(res["arms"])
    means = [res["arms"][a]["mean"] for a in names]
    err = [[m - res["arms"][a]["ci_low"] for a, m in zip(names, means, strict=True)],
           [res["arms"][a]["ci_high"] - m for a, m in zip(names, means, strict=True)]]
    colors = {"no_finetune": "#999999", "fixed_instruction": "#fdae6b", "base_prompter": "#6baed6",
              "best_of_n": "#9e9ac8", "alignpro": "#2171b5", "rlhf": "#cb181d"}
    ax.bar(range(len(names)), means, yerr=err, capsize=6, color=[colors.get(a, "#777777") for a in names])
    ax.set_xticks(range(len(names)), [description(a).split(" (")[0] for a in names], rotation=15)
    ax.set_ylabel("held-out reward r(x, y), mean ± 95 % CI")
    ax.set_title("Arms on the same held-out prompts")
    ax.axhline(0, color="black", linewidth=0.5)
    ax3 = ax2.twinx()
    trained = [arm for arm in ("alignpro", "rlhf") if arm in runs]  # the oracle's learning curve beside Align-Pro's
    for arm in trained:
        name = "" if trained == ["alignpro"] else f"{description(arm).split(' (')[0]}, "
        shades = matplotlib.colormaps["Blues" if arm == "alignpro" else "Reds"]
        for i, (seed, run) in enumerate(sorted(runs[arm].items())):
            rows = [r for r in run["curve"] if "reward" in r]
            steps = [r["step"] for r in rows]
            shade = shades(0.9 - 0.45 * i / max(1, len(runs[arm]) - 1))  # one shade per seed
            ax2.plot(steps, [r["reward"] for r in rows], "-o", markersize=3, color=shade,
                     label=f"{name}reward, seed {seed}")
            ax3.plot(steps, [r.get("kl_seq", float("nan")) for r in rows], "--", color=shade, alpha=0.7,
                     label=f"{name}KL, seed {seed}")
    ax2.set_xlabel("RL step")
    ax2.set_ylabel("training reward (mean over samples)")
    ax3.set_ylabel("sequence KL to the reference, nats (dashed)")
    ax2.set_title("Training: " + " and ".join(description(a).split(" (")[0] for a in trained) if trained
                  else "Training")
    handles = ax2.get_legend_handles_labels()[0] + ax3.get_legend_handles_labels()[0]
    if handles:
        ax2.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="lower right")
    if kinds:
        kind_heatmap(axes[2], kinds)
    if training:
        for panel, (kind, by_step) in zip(grid[1], training.items(), strict=False):
            steps, lines = pooled_shares(by_step)
            for j, (text, share) in enumerate(lines.items()):
                panel.plot(steps, share, color="#999999" if text == "other" else f"C{j}", linewidth=1.5,
                           label=text if len(text) <= 40 else text[:39] + "…")
            panel.set_ylim(0, 1)
            panel.set_xlabel("RL step")
            panel.set_ylabel(f"share of rewrites (last {SHARE_WINDOW} steps)")
            panel.set_title(f"What Align-Pro adds to x while training: {kind}")
            panel.legend(fontsize=7, loc="upper left", framealpha=0.6)
        for panel in grid[1][len(training):]:
            panel.axis("off")
    fig.tight_layout()
    path = out / "comparison.png"
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def kind_heatmap(ax, kinds: dict) -> None:
    """Arm × kind mean held-out reward, annotated: where one fixed instruction loses and per-query rewriting wins."""
    arms = list(kinds)
    names = list(dict.fromkeys(k for by_kind in kinds.values() for k in by_kind))
    grid = [[kinds[a].get(k, {}).get("mean", float("nan")) for k in names] for a in arms]
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):  # dark text on viridis's light (high) end, white on its dark end
            light = image.norm(value) > 0.6
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="black" if light else "white", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(arms)), [description(a).split(" (")[0] for a in arms], fontsize=8)
    ax.set_title("Mean held-out reward per kind of prompt")
    ax.figure.colorbar(image, ax=ax, fraction=0.046)


def log_wandb(res: dict, image: Path, out: Path, name: str) -> str | None:
    import wandb

    from alignpro.run.tracking import wandb_mode

    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project="alignpro", job_type="comparison", name=name, group=f"sweep-{out.name}", dir=str(out),
                     mode=wandb_mode(), reinit="finish_previous")
    run.log({"comparison/arms": wandb.Table(columns=["arm", "mean", "ci_low", "ci_high", "n"],
                                            data=[[k, a["mean"], a["ci_low"], a["ci_high"], a["n"]]
                                                  for k, a in res["arms"].items()]),
             "comparison/pairs": wandb.Table(columns=["pair", "diff_mean", "ci_low", "ci_high", "n_pairs"],
                                             data=[[k, p["diff_mean"], p["diff_ci_low"], p["diff_ci_high"],
                                                    p["n_pairs"]] for k, p in res["pairs"].items()]),
             "comparison/plot": wandb.Image(str(image))})
    run.summary.update({f"comparison/{k.replace(' - ', '_minus_')}": p["diff_mean"] for k, p in res["pairs"].items()})
    where = str(Path(run.dir).parent) if run.settings.mode == "offline" else run.url
    run.finish()
    return where


def compare(sweep_dir: str | Path, out: str | Path | None = None, wandb_log: bool = True) -> dict:
    """Read the sweep's runs, write comparison.{json,md,png} into ``out`` (default: the sweep dir), log to W&B."""
    runs = load_runs(sweep_dir)
    out = Path(out or sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = comparison(runs)
    best = kinds_best(runs)
    if best and "kinds" in res:
        res["kind_best"] = {"best": best, "match": kind_match(res["kinds"], best)}
    res["training_by_kind"] = training_by_kind(runs)
    res["runs"] = {arm: {seed: r["dir"] for seed, r in by_seed.items()} for arm, by_seed in runs.items()}
    write_atomic(out / "comparison.json", json.dumps(res, indent=2, ensure_ascii=False))
    write_atomic(out / "comparison.md", markdown(res, str(sweep_dir)))
    res["plot"] = str(plot(res, runs, out))
    if wandb_log:
        res["wandb"] = log_wandb(res, Path(res["plot"]), out, name=f"comparison:{Path(sweep_dir).name}")
    return res


class ComparisonCallback(Callback):
    """``hydra.callbacks.comparison._target_: alignpro.report.compare.ComparisonCallback``: after the sweep's last job,
    compare its arms and print the table and the sentence."""

    def __init__(self, wandb_log: bool = True) -> None:
        self.wandb_log = wandb_log

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = config.hydra.sweep.dir
        try:
            res = compare(sweep_dir, wandb_log=self.wandb_log and config.get("logger", {}).get("backend") == "wandb")
        except BadInput as err:  # no finished runs to compare: the sweep's own jobs said why
            print(f"alignpro: {err}")
            return
        print("\n" + (Path(sweep_dir) / "comparison.md").read_text(encoding="utf-8"))
        print(f"written: {Path(sweep_dir) / 'comparison.json'}, {res['plot']}")


def main(argv: list[str] | None = None) -> dict:
    ap = ArgumentParser(prog="python -m alignpro.report.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", help="a multirun dir of the arms (e.g. outputs/demo/<time>)")
    ap.add_argument("--out", default=None, help="where comparison.{json,md,png} go (default: the runs dir)")
    ap.add_argument("--no-wandb", action="store_true", help="do not log the comparison to W&B")
    args = ap.parse_args(argv)
    res = compare(args.runs, args.out, wandb_log=not args.no_wandb)
    print((Path(args.out or args.runs) / "comparison.md").read_text(encoding="utf-8"))
    return res


if __name__ == "__main__":
    run_cli(main)
