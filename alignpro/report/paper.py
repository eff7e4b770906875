"""The paper's own numbers (Table 1, Figures 2–3; docs/paper.md §6), shipped as package data with their provenance,
as report rows, and the headline shape counted on them or on ours."""

from __future__ import annotations

import functools
import json

from alignpro.report.statistics import gap_closed, mean

DATASET_ORDER = ("ultrafeedback", "helpsteer", "orca")  # the paper's panel order

@functools.cache
def paper_results() -> dict:
    """The paper's published numbers, shipped as package data with their provenance (printed vs digitised).
    Read once per process; callers only read it."""
    from importlib.resources import files

    return json.loads((files("alignpro.report") / "paper_results.json").read_text(encoding="utf-8"))


@functools.cache
def paper_cells() -> dict[tuple, dict]:
    """(dataset, P label, F label) -> the paper's values of that cell, in the report row's keys."""
    paper = paper_results()

    def by_cell(block: str) -> dict:
        return {(r["dataset"], r["prompter"], r["frozen"]): r for r in paper[block]["rows"]}

    var, wins = by_cell("figure3_variance"), by_cell("table1")
    return {k: {"paper_mean": m, "paper_var": var[k], "paper_table1": wins[k],
                "paper_gap_closed": gap_closed(m["alignpro"], m["no_finetune"], m["rlhf"])}
            for k, m in by_cell("figure2_mean").items()}


def row_order(row: dict) -> tuple:
    """Rows in the paper's panel order (other datasets after it), then by label."""
    ds = row["cell"]["dataset.name"]
    return (DATASET_ORDER.index(ds) if ds in DATASET_ORDER else len(DATASET_ORDER), str(ds), row["label"])


def paper_labels(paper: dict) -> tuple[dict, dict]:
    """Config names -> the paper's P1/P2 and F1/F2 labels."""
    prompters = {v["config"]: k for k, v in paper["prompters"].items()}
    return prompters, {v["config"]: k for k, v in paper["frozen"].items()}


def paper_only_rows() -> list[dict]:
    """The paper's 12 cells as report rows with no runs of ours (``--paper``)."""
    paper = paper_results()
    names = {**{k: v["config"] for k, v in paper["prompters"].items()},
             **{k: v["config"] for k, v in paper["frozen"].items()}}
    rows = [{"cell": {"dataset.name": ds, "prompter.name": names[p], "frozen.name": names[f]},
             "label": f"{p}-{f}", "arms": {}, "gap_closed": None, "missing": [], **values}
            for (ds, p, f), values in paper_cells().items()]
    return sorted(rows, key=row_order)


def paper_claims(rows: list[dict]) -> dict:
    """The headline shape, counted over cells that have the three arms: Align-Pro > no FT, oracle > Align-Pro,
    Align-Pro's variance lowest, mean gap closed. Works on ours (``arms``) or on the paper's values."""
    def triple(r, ours):
        if ours:
            a = r["arms"]
            if not {"no_finetune", "alignpro", "rlhf"} <= set(a):
                return None
            return ({k: a[k]["reward_mean"] for k in ("no_finetune", "alignpro", "rlhf")},
                    {k: a[k]["reward_var"] for k in ("no_finetune", "alignpro", "rlhf")})
        return (r["paper_mean"], r["paper_var"]) if r["paper_mean"] else None

    out = {}
    for who, ours in (("ours", True), ("paper", False)):
        ts = [t for t in (triple(r, ours) for r in rows) if t]
        if not ts:
            continue
        gaps = [gap_closed(m["alignpro"], m["no_finetune"], m["rlhf"]) for m, _ in ts
                if m["rlhf"] > m["no_finetune"]]
        out[who] = {"cells": len(ts),
                    "alignpro_beats_no_finetune": sum(m["alignpro"] > m["no_finetune"] for m, _ in ts),
                    "oracle_beats_alignpro": sum(m["rlhf"] > m["alignpro"] for m, _ in ts),
                    "alignpro_lowest_variance": sum(v["alignpro"] < min(v["no_finetune"], v["rlhf"]) for _, v in ts),
                    "mean_gap_closed": mean(gaps) if gaps else None}
    return out
