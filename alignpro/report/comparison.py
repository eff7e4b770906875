"""The paper's comparison from a multirun of the arms: Table 1 (pairwise judge win / tie / loss) and Figures 2–3
(reward mean and variance) per cell of the grid (dataset × prompter × frozen), beside the paper's values, with the
paired differences of arms on the same prompts and the gap closed (D11). The numbers are computed, judged and
written here; their markdown layout is :mod:`alignpro.report.comparison_markdown`'s."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from alignpro.report.compare import PAIRS, paired
from alignpro.report.comparison_markdown import claims_markdown, comparison_markdown
from alignpro.report.figures import plot_bars
from alignpro.report.paper import paper_cells, paper_claims, paper_labels, paper_only_rows, paper_results, row_order
from alignpro.report.runs import collect, factors, fmt, job_config, pooled, sort_key, why_missing
from alignpro.report.statistics import bootstrap_ci, gap_closed, sample_variance, win_tie_loss
from alignpro.report.wandb_log import log_report
from alignpro.run.directory import RunDir, write_atomic
from alignpro.run.errors import BadInput, RunFault

CELL_KEYS = ("dataset.name", "prompter.name", "frozen.name")  # a cell of the paper's grid: dataset × prompter × frozen


class ReportIncomplete(RunFault):
    """The report was written, but without some of what it was asked for (a judge that died partway: the pairs it
    did not judge are named in the message and in report.md)."""


def cell_keys(jobs: list[dict]) -> list[str]:
    """The grid's keys plus anything else the sweep varied (λ, steps, …), except the arm and the seed."""
    own = ("method.", "prompter.", "frozen.", "dataset.")
    return [*CELL_KEYS, *[k for k in factors(jobs) if not k.startswith(own)]]


def _label(cell: dict, p_of: dict, f_of: dict) -> str:
    p, f = cell["prompter.name"], cell["frozen.name"]
    base = f"{p_of[p]}-{f_of[f]}" if p in p_of and f in f_of else f"{p} → {f}"
    extra = [f"{k}={fmt(v)}" for k, v in cell.items() if k not in CELL_KEYS]
    return ", ".join([base, *extra])


def comparison_cells(jobs: list[dict], missing: list[str], n_resamples: int = 2000) -> list[dict]:
    """One row per cell: per arm the pooled rewards' mean / variance (with bootstrap CIs), seeds and spread; gap
    closed (D11); the paper's values when the cell is one of the paper's; which arms are missing and why."""
    p_of, f_of = paper_labels(paper_results())
    keys = cell_keys(jobs)
    cells: dict[tuple, dict] = {}

    def cell_of(config: dict) -> dict:
        key = tuple(json.dumps(config.get(k)) for k in keys)
        if key not in cells:
            cells[key] = {"cell": {k: config.get(k) for k in keys}, "jobs": defaultdict(list), "missing": []}
        return cells[key]

    for j in jobs:
        cell_of(j["config"])["jobs"][j["config"].get("method.name")].append(j)
    for d in missing:
        config = job_config(Path(d))
        cell_of(config)["missing"].append({"method": config.get("method.name"), "why": why_missing(d)})
    no_paper = {"paper_mean": None, "paper_var": None, "paper_table1": None, "paper_gap_closed": None}
    rows = []
    for c in cells.values():
        cell = c["cell"]
        arms = {}
        for arm, members in c["jobs"].items():
            values = [r for j in members for r in j["rewards"]]
            arms[arm] = {
                **pooled(members, n_resamples),
                "var_ci": bootstrap_ci(values, sample_variance, n_resamples) if len(values) > 2 else (None, None),
                "runs": sorted(({"seed": j["config"].get("seed"), "dir": j["dir"]} for j in members),
                               key=lambda run: sort_key(run["seed"])),
            }
        pk = (cell["dataset.name"], p_of.get(cell["prompter.name"]), f_of.get(cell["frozen.name"]))
        gap = None
        if {"alignpro", "no_finetune", "rlhf"} <= set(arms):
            nf, orc = arms["no_finetune"]["reward_mean"], arms["rlhf"]["reward_mean"]
            # D11's ratio only means "share of the gap closed" when the oracle is above no fine-tuning.
            gap = gap_closed(arms["alignpro"]["reward_mean"], nf, orc) if orc > nf else "no gap (oracle ≤ no FT)"
        by_seed = {arm: {j["config"].get("seed"): {"rewards": j["by_prompt"]} for j in members}
                   for arm, members in c["jobs"].items()}
        pairs = {f"{a} - {b}": p for a, b in PAIRS if a in by_seed and b in by_seed
                 for p in [paired(by_seed[a], by_seed[b], n_resamples)] if p}
        rows.append({"cell": cell, "label": _label(cell, p_of, f_of), "arms": arms, "gap_closed": gap, "paired": pairs,
                     "missing": c["missing"], **paper_cells().get(pk, no_paper)})
    return sorted(rows, key=row_order)


def judge_cell(row: dict, judge, n_prompts: int, out: Path) -> dict | None:
    """Judge Align-Pro (A) against no fine-tuning (B) on the same held-out prompts, both orders per pair (D9);
    writes every verdict to ``out/judge/<cell>.jsonl`` and returns win / tie / loss with CIs.

    A judge that failed partway (:class:`alignpro.report.judge.JudgeIncomplete`) leaves the cell with the pairs it
    judged:
    the rates and the verdicts file are over those, and ``missing`` names the others (pair number, seed, prompt)."""
    from alignpro.report.judge import JudgeIncomplete

    arms = row["arms"]
    if "alignpro" not in arms or "no_finetune" not in arms:
        return None
    by_seed_b = {run["seed"]: RunDir(Path(run["dir"])).read_eval_samples() for run in arms["no_finetune"]["runs"]}
    prompts, a, b, seeds = [], [], [], []
    for run in arms["alignpro"]["runs"]:  # paired with the no_finetune run of the same seed, if there is one
        rows_b = by_seed_b.get(run["seed"]) or next(iter(by_seed_b.values()))
        answers_b = defaultdict(list)
        for s in rows_b:
            answers_b[s.x].append(s.y)
        for s in RunDir(Path(run["dir"])).read_eval_samples():
            if answers_b.get(s.x):  # the same prompt x, answered by both arms
                prompts.append(s.x)
                a.append(s.y)
                b.append(answers_b[s.x].pop(0))
                seeds.append(run["seed"])
    prompts, a, b = prompts[:n_prompts], a[:n_prompts], b[:n_prompts]
    if not prompts:
        return None
    try:
        verdicts, missing = judge.judge_pairs(prompts, a, b), []
    except JudgeIncomplete as err:  # the judge's backend died: keep what it judged, name what it did not
        verdicts, missing = err.records, err.missing
    lost = set(missing)
    judged = [v for i, v in enumerate(verdicts) if i not in lost]
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in row["label"])
    write_atomic(out / "judge" / f"{slug}.jsonl", "".join(json.dumps(v, ensure_ascii=False, default=str) + "\n"
                                                          for v in judged))
    res = win_tie_loss([(v["outcome_ab"], v["outcome_ba"]) for v in judged])
    res["verdicts"] = str(out / "judge" / f"{slug}.jsonl")
    res["missing"] = [{"pair": i + 1, "seed": seeds[i], "prompt": prompts[i]} for i in missing]
    return res


def _numbers(ns: list[int], most: int = 12) -> str:
    """``[1, 2, 3, 5]`` → ``"1-3, 5"``; past ``most`` spans, "…" (the one line stays short; report.md lists all)."""
    spans: list[list[int]] = []
    for n in sorted(ns):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    text = ", ".join(f"{lo}-{hi}" if hi > lo else f"{lo}" for lo, hi in spans[:most])
    return text + (", …" if len(spans) > most else "")


def judge_missing(rows: list[dict], failure: str | None) -> dict | None:
    """The pairs a failed judge left without a verdict, over all cells: counts, the summary line (``judge: N of M
    pairs missing (why)``) and per cell which pairs; None when every pair was judged."""
    judged = [r for r in rows if r.get("judge")]
    n_missing = sum(len(r["judge"]["missing"]) for r in judged)
    if not n_missing:
        return None
    n_total = n_missing + sum(r["judge"]["n_pairs"] for r in judged)
    cells = [(f"{r['cell']['dataset.name']}: {r['label']}", r["judge"]["missing"]) for r in judged
             if r["judge"]["missing"]]
    return {"n_missing": n_missing, "n_total": n_total, "failure": failure, "cells": cells,
            "line": f"judge: {n_missing} of {n_total} pairs missing ({failure or 'the judge failed'})"}


def comparison_report(sweep_dir: str | Path | None, out: str | Path, *, judge_cfg=None, paper_only: bool = False,
                      wandb_log: bool = True) -> dict:
    """Table 1 and Figures 2–3 from a multirun of the four arms (or the paper's own numbers with ``paper_only``).

    A judge that fails partway (its server died) still gets its report: report.md and report.json are written with
    the pairs judged, the missing ones named, then :class:`ReportIncomplete` says how many are missing and why. The
    incomplete report is not logged to W&B; the run that completes it is."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if paper_only:
        rows, title, missing = paper_only_rows(), "Align-Pro paper: Table 1 and Figures 2–3 (paper values only)", []
    else:
        jobs, missing = collect(sweep_dir)
        if not jobs:
            raise BadInput(f"no finished runs (with metrics.json) under '{sweep_dir}'")
        rows, title = comparison_cells(jobs, missing), f"Align-Pro vs baselines ({sweep_dir})"
    judge_name, missing_pairs = None, None
    if judge_cfg is not None and not paper_only:
        from alignpro.report.judge import build_judge

        judge = build_judge(judge_cfg)
        judge_name = f"{judge_cfg.get('name', '?')} ({judge_cfg.get('model') or judge_cfg.get('model_id') or ''})"
        for r in rows:
            r["judge"] = judge_cell(r, judge, judge_cfg.get("n_prompts", 100), out)
        judge_stats = dict(judge.stats)  # orders judged, backend requests, cache hits, retries, invalid orders
        judge_name += f"; {judge_stats.get('orders', 0)} orders, {judge_stats.get('cache_hits', 0)} from the cache, " \
                      f"{judge_stats.get('retries', 0)} retries, {judge_stats.get('invalid', 0)} invalid"
        missing_pairs = judge_missing(rows, judge.failure)
    figures = plot_bars(rows, "reward_mean", out, "figure2_mean", "Figure 2: mean reward r(x, y)")
    figures += plot_bars(rows, "reward_var", out, "figure3_variance", "Figure 3: reward variance")
    claims = paper_claims(rows)
    md = comparison_markdown(rows, title, judge_name, figures, paper_only, missing_pairs) + claims_markdown(claims)
    write_atomic(out / "report.md", md)
    write_atomic(out / "report.json", json.dumps({"rows": rows, "claims": claims, "missing": missing,
                                                  "judge_missing": missing_pairs}, indent=2, default=str))
    res = {"rows": rows, "claims": claims, "missing": missing, "figures": figures, "report": str(out / "report.md"),
           "judge_missing": missing_pairs}
    if missing_pairs:
        cells = "; ".join(f"{cell}: pair{'s' if len(pairs) > 1 else ''} {_numbers([p['pair'] for p in pairs])}"
                          for cell, pairs in missing_pairs["cells"][:3])
        more = len(missing_pairs["cells"]) - 3
        raise ReportIncomplete(
            f"{missing_pairs['line']}; missing: {cells}{f'; and {more} more cells' if more > 0 else ''}. "
            f"{out / 'report.md'} has the {missing_pairs['n_total'] - missing_pairs['n_missing']} judged and names "
            "the missing ones; run the same command again once the judge answers: only the missing verdicts are "
            "asked for (those received are cached)")
    if wandb_log:
        res["wandb"] = log_report(out, rows, figures, name=f"report:{'paper' if paper_only else Path(sweep_dir).name}")
    return res
