"""Prompt/preference data: every dataset becomes a list of one normalised record, split into train and held-out.

Record (D6): ``prompt``, ``system`` (or None), ``chosen``, ``rejected`` (or None), ``chosen_score``,
``rejected_score`` (or None), ``source_id``. Train records feed the prompter's (or oracle's) RL and the embedded
reward model's Bradley–Terry fit; held-out records are the evaluation prompts, the same for every method and seed.

Sources (``dataset.source``): ``embedded`` (the preference set shipped in this package, ``alignpro/assets``) and
``hub`` (``datasets.load_dataset`` on ``dataset.hub_id``, or on ``dataset.path`` for a local copy laid out like the
hub repo), normalised by the adapter named in ``dataset.adapter``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alignpro.assets import EMBEDDED_PREFS

Record = dict  # keys listed in the module docstring


class DataError(ValueError):
    """The dataset config or the data itself cannot be used; the message names the bad value."""


@dataclass
class Splits:
    train: list[Record]
    heldout: list[Record]
    info: dict = field(default_factory=dict)


def _record(prompt, chosen=None, rejected=None, system=None, chosen_score=None, rejected_score=None, source_id=""):
    return {
        "prompt": prompt,
        "system": system or None,  # empty system prompts count as none (Orca has many)
        "chosen": chosen,
        "rejected": rejected,
        "chosen_score": chosen_score,
        "rejected_score": rejected_score,
        "source_id": str(source_id),
    }


# ---- adapters: hub row(s) -> records -------------------------------------------------------------------------
def adapt_ultrafeedback(rows) -> list[Record]:
    """HuggingFaceH4/ultrafeedback_binarized: the last message of chosen/rejected is the answer."""
    return [
        _record(r["prompt"], r["chosen"][-1]["content"], r["rejected"][-1]["content"],
                chosen_score=r.get("score_chosen"), rejected_score=r.get("score_rejected"),
                source_id=r.get("prompt_id", i))
        for i, r in enumerate(rows)
    ]


def adapt_helpsteer(rows) -> list[Record]:
    """nvidia/HelpSteer: one response per row; rows sharing a prompt are grouped (prompts de-duplicated) and the
    best and worst response by helpfulness become chosen/rejected (None when a prompt has a single response)."""
    by_prompt: dict[str, list] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt"], []).append(r)
    out = []
    for i, (prompt, group) in enumerate(by_prompt.items()):
        group = sorted(group, key=lambda r: r.get("helpfulness", 0), reverse=True)
        best, worst = group[0], group[-1]
        pair = len(group) > 1 and best.get("helpfulness") != worst.get("helpfulness")
        out.append(_record(prompt, best["response"], worst["response"] if pair else None,
                           chosen_score=best.get("helpfulness"),
                           rejected_score=worst.get("helpfulness") if pair else None, source_id=i))
    return out


def adapt_orca(rows) -> list[Record]:
    """argilla/distilabel-intel-orca-dpo-pairs: ``input`` is the prompt, ``system`` optional."""
    return [
        _record(r["input"], r["chosen"], r["rejected"], system=r.get("system"),
                chosen_score=r.get("chosen_score"), source_id=i)
        for i, r in enumerate(rows)
    ]


def adapt_embedded(rows) -> list[Record]:
    return [_record(r["prompt"], r["chosen"], r["rejected"], source_id=r["id"]) for r in rows]


ADAPTERS: dict[str, Callable] = {
    "embedded": adapt_embedded,
    "ultrafeedback": adapt_ultrafeedback,
    "helpsteer": adapt_helpsteer,
    "orca": adapt_orca,
}


# ---- loading and splitting ----------------------------------------------------------------------------------------
def _check_rows(rows: list[dict], prompt_field: str, where: str) -> None:
    if not rows:
        raise DataError(f"dataset {where} is empty: no rows to train or evaluate on.")
    if prompt_field not in rows[0]:
        raise DataError(
            f"dataset {where} has no prompt field '{prompt_field}'; its columns are: {', '.join(sorted(rows[0]))}. "
            "Set dataset.prompt_field to one of them."
        )


def read_embedded(path: str | Path | None = None) -> list[dict]:
    path = Path(path) if path else EMBEDDED_PREFS
    if not path.is_file():
        raise DataError(f"dataset.path '{path}' does not exist (expected a JSONL file of preference rows).")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def seeded_split(records: list[Record], heldout: int | float, seed: int) -> tuple[list[Record], list[Record]]:
    """Deterministic held-out split, independent of the run's seed so every method and seed sees the same one."""
    n_held = int(round(heldout * len(records))) if isinstance(heldout, float) and heldout < 1 else int(heldout)
    if not 0 < n_held < len(records):
        raise DataError(f"dataset.heldout={heldout} leaves no train or no held-out rows out of {len(records)}.")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_held])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


def load_splits(cfg) -> Splits:
    """Factory for the ``dataset`` config group."""
    if cfg.adapter not in ADAPTERS:
        raise DataError(f"dataset.adapter='{cfg.adapter}' is unknown; valid: {', '.join(ADAPTERS)}")
    adapt = ADAPTERS[cfg.adapter]
    if cfg.source == "embedded":
        rows = read_embedded(cfg.get("path"))
        _check_rows(rows, cfg.prompt_field, f"'{cfg.get('path') or EMBEDDED_PREFS.name}'")
        rows = [dict(r, prompt=r[cfg.prompt_field]) for r in rows]
        train, held = seeded_split(adapt(rows), cfg.heldout, cfg.split_seed)
    elif cfg.source == "hub":
        from datasets import load_dataset

        where = cfg.get("path") or cfg.hub_id
        if cfg.get("path") and not Path(cfg.path).exists():
            raise DataError(f"dataset.path '{cfg.path}' does not exist.")
        ds = load_dataset(where)
        for split in (cfg.train_split, cfg.heldout_split):
            if split and split not in ds:
                raise DataError(f"dataset '{where}' has no split '{split}'; its splits are: {', '.join(ds)}.")
        train_rows = list(ds[cfg.train_split])
        _check_rows(train_rows, cfg.prompt_field, f"'{where}' split '{cfg.train_split}'")
        if cfg.heldout_split:
            train, held = adapt(train_rows), adapt(list(ds[cfg.heldout_split]))
        else:
            train, held = seeded_split(adapt(train_rows), cfg.heldout, cfg.split_seed)
    else:
        raise DataError(f"dataset.source='{cfg.source}' is unknown; valid: embedded, hub")
    train = [r for r in train if r["prompt"] and r["prompt"].strip()]
    held = [r for r in held if r["prompt"] and r["prompt"].strip()]
    if cfg.get("max_train"):
        train = train[: cfg.max_train]
    if not train or not held:
        raise DataError(f"dataset '{cfg.name}' has {len(train)} train and {len(held)} held-out prompts after "
                        "filtering empty prompts; both must be > 0.")
    return Splits(train, held, {"n_train": len(train), "n_heldout": len(held), "name": cfg.name})
