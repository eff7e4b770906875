"""Prompt/preference data: every dataset becomes a list of one normalised record, split into train and held-out.

Record (D6): ``prompt``, ``system`` (or None), ``chosen``, ``rejected`` (or None), ``chosen_score``,
``rejected_score`` (or None), ``source_id``, ``kind`` (the prompt's kind, or None: only ``dataset=context`` has
kinds, and reports break its results down by them), ``rejected_other`` (a second rejected answer, or None: in
``dataset=context`` the answer's third form, a second pair for the reward's fit). Downstream code reads only
``prompt`` (the user turn the prompter rewrites and the reward model scores) and, for the embedded Bradley–Terry
reward, ``chosen``/``rejected`` (and ``rejected_other``);
``system`` is provenance (the source's system prompt, whatever ``dataset.system`` did with it). Train records feed
the prompter's (or oracle's) RL and the embedded reward model's fit; held-out records are the evaluation prompts,
the same for every method and seed.

Data flow of :func:`load_splits` (``dataset`` config group, conf/dataset/*.yaml):

1. check the options (``ties``, ``system``, length filters, ...) — a bad value is a :class:`DataError` before any
   data is read;
2. read rows (:mod:`alignpro.data.readers`): ``source: embedded`` reads a JSONL shipped in ``alignpro/data``
   (``dataset.asset``); ``source: file`` reads the user's own JSONL or CSV at ``dataset.path`` (fields named by
   ``prompt_field``, ``chosen_field``, ``rejected_field``, ``id_field``);
   ``source: hub`` calls ``datasets.load_dataset`` on ``dataset.path`` (a local copy laid out like the hub repo:
   same files, same split names) or else ``dataset.hub_id``, then checks the split names and the columns the
   adapter reads;
3. adapt (:mod:`alignpro.data.adapters`): the adapter named by ``dataset.adapter`` turns hub rows into records
   (HelpSteer groups its one-response rows by prompt, so prompts are de-duplicated there by construction);
4. split: the hub's own held-out split (``heldout_split``) or, when there is none (Orca, embedded, files), a
   seeded split of the adapted records fixed by ``split_seed`` — never by the run's ``seed`` — and made *before*
   filtering, so a filter only removes rows from each side and never moves a prompt from one side to the other;
5. filter each side, in this order, counting what each rule drops: empty prompt, Orca card filter, ties, prompt
   length, response length, duplicate prompt; then train prompts that also occur in the held-out split (no
   evaluation prompt is trained on) and ``max_train``.

The counts end up in :attr:`Splits.info`, which ``alignpro.train`` writes to ``metrics.json``; ``python -m
alignpro.data dataset=<name> [dataset.path=<dir>]`` prints them with the first records (alignpro/data/__main__.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignpro.config.schema import DatasetConfig
from alignpro.data import EMBEDDED_PREFS, DataError
from alignpro.data.adapters import ADAPTERS, Record, option
from alignpro.data.readers import FILE_SUFFIXES, check_fields, check_rows, read_embedded, read_hub, read_table

TIES = ("unpair", "keep", "drop")
SYSTEM = ("prepend", "drop")
SOURCES = ("embedded", "file", "hub")
LENGTH_KEYS = ("min_prompt_chars", "max_prompt_chars", "max_response_chars")
# Filter rules in the order they run; Splits.info counts the rows each one dropped (first matching rule wins).
DROP_RULES = ("empty_prompt", "card_filter", "ties", "prompt_length", "response_length", "duplicate", "in_heldout",
              "max_train")


@dataclass
class Splits:
    train: list[Record]
    heldout: list[Record]
    info: dict = field(default_factory=dict)


def check_options(cfg: Any) -> None:
    """Raise DataError on an unknown adapter/source or an invalid filter option, before any data is read."""
    if cfg.adapter not in ADAPTERS:
        raise DataError(f"dataset.adapter='{cfg.adapter}' is unknown; valid: {', '.join(ADAPTERS)}")
    if cfg.source not in SOURCES:
        raise DataError(f"dataset.source='{cfg.source}' is unknown; valid: {', '.join(SOURCES)}")
    if cfg.source == "file":
        path = cfg.get("path")
        if not path:
            raise DataError("dataset=jsonl needs dataset.path: a local .jsonl or .csv file with one prompt per row "
                            "(e.g. dataset.path=my_prompts.jsonl)")
        if Path(path).suffix.lower() not in FILE_SUFFIXES:
            raise DataError(f"dataset.path '{path}' has an unknown suffix; valid: {', '.join(FILE_SUFFIXES)}")
        if not Path(path).is_file():
            raise DataError(f"dataset.path '{path}' does not exist (expected a .jsonl or .csv file of prompts).")
    for key, valid in (("ties", TIES), ("system", SYSTEM)):
        if cfg.get(key) is not None and cfg[key] not in valid:
            raise DataError(f"dataset.{key}='{cfg[key]}' is invalid; valid: {', '.join(valid)}")
    for key in LENGTH_KEYS:
        v = cfg.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise DataError(f"dataset.{key}={v!r} is invalid; use an integer number of characters >= 0, or null")
    for key in ("dedup", "card_filter"):
        if not isinstance(cfg.get(key, False) or False, bool):
            raise DataError(f"dataset.{key}={cfg[key]!r} is invalid; valid: true, false")
    if cfg.get("card_filter") and cfg.adapter != "orca":
        raise DataError(f"dataset.card_filter=true applies to the Orca card's filter only, not adapter "
                        f"'{cfg.adapter}'; valid: false")
    rank_by = cfg.get("rank_by")
    if rank_by is not None and (isinstance(rank_by, str) or not len(rank_by)):
        raise DataError(f"dataset.rank_by={rank_by!r} is invalid; give a non-empty list of rating columns, "
                        "e.g. [helpfulness] or [helpfulness,correctness]")


def seeded_split(records: list[Record], heldout: int | float, seed: int) -> tuple[list[Record], list[Record]]:
    """Deterministic held-out split, independent of the run's seed so every method and seed sees the same one."""
    n_held = int(round(heldout * len(records))) if isinstance(heldout, float) and heldout < 1 else int(heldout)
    if not 0 < n_held < len(records):
        raise DataError(f"dataset.heldout={heldout} leaves no train or no held-out rows out of {len(records)}.")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_held])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


def filter_records(records: list[Record], cfg: Any, dropped: dict[str, int]) -> list[Record]:
    """Apply the config's rules to adapted records (counting drops per rule in ``dropped``); strip adapter marks.

    Ties (``dataset.ties``): ``keep`` leaves the pair as labelled, ``unpair`` keeps the prompt but sets rejected
    (and its score) to None so no equal-score pair reaches the Bradley–Terry fit or a pairwise accuracy, ``drop``
    removes the row."""
    ties, dedup, card = option(cfg, "ties", "keep"), option(cfg, "dedup", False), option(cfg, "card_filter", False)
    lo, hi, resp = (option(cfg, k) for k in LENGTH_KEYS)
    seen: set[str] = set()
    kept = []
    for r in records:
        dropped["duplicate"] += r.get("_rows", 1) - 1  # HelpSteer rows merged into their prompt's record
        if r.get("_tie") and ties == "unpair":
            r = r | {"rejected": None, "rejected_score": None, "rejected_other": None}
        prompt = r["prompt"]
        rule = None
        if not (r.get("_user", prompt) or "").strip():
            rule = "empty_prompt"
        elif card and not r.get("_card_ok", True):
            rule = "card_filter"
        elif r.get("_tie") and ties == "drop":
            rule = "ties"
        elif (lo is not None and len(prompt) < lo) or (hi is not None and len(prompt) > hi):
            rule = "prompt_length"
        elif resp is not None and any(x is not None and len(x) > resp for x in (r["chosen"], r["rejected"])):
            rule = "response_length"
        elif dedup and prompt in seen:  # first occurrence wins: row order is fixed, so this is deterministic
            rule = "duplicate"
        if rule:
            dropped[rule] += 1
            continue
        seen.add(prompt)
        kept.append({k: v for k, v in r.items() if not k.startswith("_")})
    return kept


def load_splits(cfg: DatasetConfig) -> Splits:
    """Factory for the ``dataset`` config group: read, adapt, split, filter (see the module docstring)."""
    check_options(cfg)
    adapt = ADAPTERS[cfg.adapter]
    if cfg.source == "embedded":
        where = str(cfg.get("path") or cfg.get("asset") or EMBEDDED_PREFS.name)
        rows = read_embedded(cfg.get("path"), cfg.get("asset"))
        check_rows(rows, cfg.prompt_field, f"'{where}'")
        rows = [dict(r, prompt=r[cfg.prompt_field]) for r in rows]
        names = dict.fromkeys(("train", "heldout"), f"seeded (split_seed={cfg.split_seed})")
        train, held = seeded_split(adapt(rows, cfg), cfg.heldout, cfg.split_seed)
    elif cfg.source == "file":
        where = str(cfg.path)
        rows = read_table(cfg.path)
        check_fields(rows, cfg, f"'{where}'")
        names = dict.fromkeys(("train", "heldout"), f"seeded (split_seed={cfg.split_seed})")
        train, held = seeded_split(adapt(rows, cfg), cfg.heldout, cfg.split_seed)
    else:
        where, rows_by_split = read_hub(cfg)
        train_rows = rows_by_split[cfg.train_split]
        check_rows(train_rows, cfg.prompt_field, f"'{where}' split '{cfg.train_split}'")
        if cfg.get("heldout_split"):
            names = {"train": cfg.train_split, "heldout": cfg.heldout_split}
            train, held = adapt(train_rows, cfg), adapt(rows_by_split[cfg.heldout_split], cfg)
        else:  # split before filtering: a filter setting never moves a prompt between train and held-out
            names = dict.fromkeys(("train", "heldout"), f"{cfg.train_split} (split_seed={cfg.split_seed})")
            train, held = seeded_split(adapt(train_rows, cfg), cfg.heldout, cfg.split_seed)

    sides: dict[str, dict] = {}
    for side, records in (("train", train), ("heldout", held)):
        sides[side] = {"split": names[side], "rows": sum(r.get("_rows", 1) for r in records),
                       "dropped": dict.fromkeys(DROP_RULES, 0), "tied": sum(bool(r.get("_tie")) for r in records)}
    held = filter_records(held, cfg, sides["heldout"]["dropped"])
    train = filter_records(train, cfg, sides["train"]["dropped"])
    held_prompts = {r["prompt"] for r in held}
    n = len(train)
    train = [r for r in train if r["prompt"] not in held_prompts]  # never train on an evaluation prompt
    sides["train"]["dropped"]["in_heldout"] = n - len(train)
    if cfg.get("max_train"):
        sides["train"]["dropped"]["max_train"] = max(0, len(train) - cfg.max_train)
        train = train[: cfg.max_train]
    for side, records in (("train", train), ("heldout", held)):
        sides[side]["records"] = len(records)
        sides[side]["pairs"] = sum(bool(r["chosen"] and r["rejected"]) for r in records)
    if not train or not held:
        dropped = {k: sides["train"]["dropped"][k] + sides["heldout"]["dropped"][k] for k in DROP_RULES}
        why = ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "nothing"
        raise DataError(f"dataset '{cfg.name}' has {len(train)} train and {len(held)} held-out prompts after "
                        f"filtering (dropped: {why}); both must be > 0. Relax dataset.ties or the length filters.")
    info = {"name": cfg.name, "n_train": len(train), "n_heldout": len(held), "source": cfg.source, "from": where,
            **sides}
    return Splits(train, held, info)


def require_pairs(splits: Splits, reward: str) -> None:
    """A reward fitted on the dataset's preference pairs (``reward.kind=bt_encoder``) needs some in the train split:
    a prompts-only file is refused here, before any model loads, instead of at the reward's set-up."""
    if not splits.info["train"]["pairs"]:
        raise DataError(f"dataset '{splits.info['from']}' has no preference pairs (chosen and rejected) in its train "
                        f"split, and reward={reward} fits its Bradley-Terry head on them; use a pretrained reward "
                        "(e.g. reward=rm_gemma_2b) or a file with answer columns (dataset.chosen_field, "
                        "dataset.rejected_field)")
