"""report.md of the paper's comparison (:mod:`alignpro.report.comparison`): Table 1 (pairwise judge win / tie /
loss), Figures 2–3's numbers (reward mean and variance per arm, gap closed), the paired differences, and what is
missing (judge pairs without a verdict, runs without metrics), each beside the paper's values."""

from __future__ import annotations

import math

from alignpro.methods.registry import METHODS
from alignpro.report.runs import fmt


def missing_pairs_markdown(missing: dict) -> list[str]:
    """The judge pairs left without a verdict, per cell (from :func:`alignpro.report.comparison.judge_missing`)."""
    lines = ["## Judge: missing pairs", "", f"{missing['line']}.", "",
             "Table 1's rates are over the judged pairs only. Run the same command again once the judge answers: "
             "the verdicts received are cached, so only these pairs are asked for.", ""]
    for cell, pairs in missing["cells"]:
        lines += [f"- {cell}: pair {p['pair']} (seed {p['seed']}): {' '.join(p['prompt'].split())[:100]!r}"
                  for p in pairs]
    return [*lines, ""]


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.0f}"


def _ci(ci) -> str:
    return "" if ci is None or ci[0] is None or not math.isfinite(ci[0]) else f" [{_pct(ci[0])}, {_pct(ci[1])}]"


def table1_markdown(rows: list[dict], judge_name: str | None, paper_only: bool = False) -> list[str]:
    head = ["## Table 1: Align-Pro (A) vs no fine-tuning (B), pairwise judge", ""]
    if paper_only:
        lines = [*head, "GPT-4 judge, one order (Align-Pro always Assistant 1), 100 samples per cell, %. Win and loss "
                 "printed in the Jan-2025 paper; ties printed in its Oct-2024 version.", "",
                 "| cell | A wins | tie | B wins |", "|---|---|---|---|"]
        for r in rows:
            p = r["paper_table1"]
            lines.append(f"| {r['cell']['dataset.name']}: {r['label']} | {p['win']} | {p['tie']} | {p['loss']} |")
        return lines
    lines = [*head, f"Judge: {judge_name or 'not run (pass --judge)'}; both orders per pair, verdicts averaged (D9); "
             "% of valid pairs with 95 % bootstrap CIs; position consistency = % of pairs whose verdict survives "
             "swapping the order. Paper: GPT-4, one order, 100 samples.", "",
             "| cell | A wins | tie | B wins | position consistency | pairs (invalid) | paper A / tie / B |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        j, p = r.get("judge"), r["paper_table1"]
        lost = f", {len(j['missing'])} missing" if j and j.get("missing") else ""
        ours = (f"{_pct(j['win'])}{_ci(j['win_ci'])} | {_pct(j['tie'])}{_ci(j['tie_ci'])} | "
                f"{_pct(j['loss'])}{_ci(j['loss_ci'])} | {_pct(j['position_consistency'])} | "
                f"{j['n_pairs']} ({j['n_invalid']}){lost}") if j else "– | – | – | – | –"
        theirs = f"{p['win']} / {p['tie']} / {p['loss']}" if p else "–"
        lines.append(f"| {r['cell']['dataset.name']}: {r['label']} | {ours} | {theirs} |")
    return lines


def _arm_cell(r: dict, arm: str, stat: str, paper_only: bool) -> str:
    a = r["arms"].get(arm)
    paper = (r["paper_mean"] if stat == "reward_mean" else r["paper_var"]) or {}
    theirs = f"{paper[arm]:.2f}" if paper.get(arm) is not None else None
    if paper_only:
        return theirs or "–"
    if a is None:
        ours = "missing" if any(m["method"] == arm for m in r["missing"]) else "–"
    else:
        lo, hi = (a["ci_low"], a["ci_high"]) if stat == "reward_mean" else a["var_ci"]
        ours = f"{a[stat]:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")
    return ours + (f" (paper {theirs})" if theirs else "")


def comparison_markdown(rows: list[dict], title: str, judge_name: str | None, figures: list[str],
                        paper_only: bool = False, missing_pairs: dict | None = None) -> str:
    arms = [a for a in METHODS if any(a in r["arms"] or (r["paper_mean"] or {}).get(a) is not None for r in rows)]
    lines = [f"# {title}", "", *table1_markdown(rows, judge_name, paper_only), ""]
    if missing_pairs:  # said at the top: the rates below are over fewer pairs than asked for
        lines += [f"**Incomplete: {missing_pairs['line']}**; the pairs are listed under *Judge: missing pairs*.", ""]
    for stat, name, fig in (("reward_mean", "Figure 2: mean reward", "figure2_mean"),
                            ("reward_var", "Figure 3: reward variance", "figure3_variance")):
        note = ("Digitised from the paper's bar charts (±0.01)." if paper_only else
                "Ours: rewards pooled over seeds, 95 % bootstrap CIs; variance is the sample variance (ddof = 1, "
                "D10). Paper values (digitised, ±0.01) in brackets where the cell is one of the paper's.")
        gap = stat == "reward_mean"
        lines += [f"## {name}", "", note + (" Gap closed = (Align-Pro − no FT) / (oracle − no FT) (D11)." if gap
                                            else ""), "",
                  "| cell | " + " | ".join(METHODS[a].label for a in arms) + (" | gap closed |" if gap else " |"),
                  "|---" * (len(arms) + 1 + gap) + "|"]
        for r in rows:
            cells = [_arm_cell(r, a, stat, paper_only) for a in arms]
            if gap:
                ours, theirs = r["gap_closed"], r["paper_gap_closed"]
                cells.append(fmt(theirs) if paper_only else
                             fmt(ours) + (f" (paper {theirs:.2f})" if theirs is not None else ""))
            lines.append(f"| {r['cell']['dataset.name']}: {r['label']} | " + " | ".join(cells) + " |")
        lines += ["", f"![{fig}]({fig}.png)", ""]
    if any(r.get("paired") for r in rows):
        lines += ["## Paired differences", "", "Per held-out prompt (and seed), the difference of two arms' rewards on "
                  "the same x; mean with a percentile-bootstrap 95 % interval over the pairs "
                  "(alignpro.report.compare).", "",
                  "| cell | pair (a − b) | mean | 95 % CI | pairs | a better |", "|---|---|---|---|---|---|"]
        for r in rows:
            for name, p in (r.get("paired") or {}).items():
                lines.append(f"| {r['cell']['dataset.name']}: {r['label']} | {name.replace(' - ', ' − ')} | "
                             f"{p['diff_mean']:+.2f} | [{p['diff_ci_low']:+.2f}, {p['diff_ci_high']:+.2f}] | "
                             f"{p['n_pairs']} | {p['share_a_better']:.0%} |")
        lines.append("")
    if missing_pairs:
        lines += missing_pairs_markdown(missing_pairs)
    missing = [m for r in rows for m in r["missing"]]
    if missing:
        lines += ["## Missing runs", "", "These jobs have no metrics.json (failed or unfinished); their bars are "
                  "absent:", *[f"- {r['cell']['dataset.name']}: {r['label']}, {m['method']}: {m['why']}"
                               for r in rows for m in r["missing"]], ""]
    return "\n".join(lines)


def claims_markdown(claims: dict) -> str:
    """The headline shape of the cells with all three arms (ours and the paper's); empty when there are none."""
    if not claims:
        return ""
    return "\n## Headline shape (cells with all three arms)\n\n" + "\n".join(
        f"- {who}: {c['cells']} cells; Align-Pro > no FT in {c['alignpro_beats_no_finetune']}, oracle > Align-Pro "
        f"in {c['oracle_beats_alignpro']}, Align-Pro variance lowest in {c['alignpro_lowest_variance']}, "
        f"mean gap closed {fmt(c['mean_gap_closed'])}" for who, c in claims.items()) + "\n"
