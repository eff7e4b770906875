"""Prompt/preference data: every dataset becomes a list of one normalised record, split into train and held-out.

Record (D6): ``prompt``, ``system`` (or None), ``chosen``, ``rejected`` (or None), ``chosen_score``,
``rejected_score`` (or None), ``source_id``. Downstream code reads only ``prompt`` (the user turn the prompter
rewrites and the reward model scores) and, for the embedded Bradley–Terry reward, ``chosen``/``rejected``;
``system`` is provenance (the source's system prompt, whatever ``dataset.system`` did with it). Train records feed
the prompter's (or oracle's) RL and the embedded reward model's fit; held-out records are the evaluation prompts,
the same for every method and seed.

Data flow of :func:`load_splits` (``dataset`` config group, conf/dataset/*.yaml):

1. check the options (``ties``, ``system``, length filters, ...) — a bad value is a :class:`DataError` before any
   data is read;
2. read rows: ``source: embedded`` reads a JSONL shipped in ``alignpro/assets`` (``dataset.asset``);
   ``source: file`` reads the user's own JSONL or CSV at ``dataset.path`` (fields named by ``prompt_field``,
   ``chosen_field``, ``rejected_field``, ``id_field``);
   ``source: hub`` calls ``datasets.load_dataset`` on ``dataset.path`` (a local copy laid out like the hub repo:
   same files, same split names) or else ``dataset.hub_id``, then checks the split names and the columns the
   adapter reads;
3. adapt: the adapter named by ``dataset.adapter`` turns hub rows into records (HelpSteer groups its one-response
   rows by prompt, so prompts are de-duplicated there by construction);
4. split: the hub's own held-out split (``heldout_split``) or, when there is none (Orca, embedded, files), a
   seeded split of the adapted records fixed by ``split_seed`` — never by the run's ``seed`` — and made *before*
   filtering, so a filter only removes rows from each side and never moves a prompt from one side to the other;
5. filter each side, in this order, counting what each rule drops: empty prompt, Orca card filter, ties, prompt
   length, response length, duplicate prompt; then train prompts that also occur in the held-out split (no
   evaluation prompt is trained on) and ``max_train``.

The counts end up in :attr:`Splits.info`, which ``alignpro.train`` writes to ``metrics.json``; ``python -m
alignpro.data.preferences dataset=<name> [dataset.path=<dir>]`` prints them with the first records (see :func:`main`).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignpro import CONF_DIR
from alignpro.config.schema import DatasetConfig, typed
from alignpro.models.assets import ASSETS_DIR, EMBEDDED_PREFS
from alignpro.run.errors import ArgumentParser, BadInput, run_cli

Record = dict  # keys listed in the module docstring

TIES = ("unpair", "keep", "drop")
SYSTEM = ("prepend", "drop")
SOURCES = ("embedded", "file", "hub")
FILE_SUFFIXES = (".jsonl", ".csv")
LENGTH_KEYS = ("min_prompt_chars", "max_prompt_chars", "max_response_chars")
# Filter rules in the order they run; Splits.info counts the rows each one dropped (first matching rule wins).
DROP_RULES = ("empty_prompt", "card_filter", "ties", "prompt_length", "response_length", "duplicate", "in_heldout",
              "max_train")
# Layout of a local copy (dataset.path) per adapter, for error messages: the hub repo's files.
LAYOUTS = {
    "ultrafeedback": "data/<split>-00000-of-00001.parquet for train_prefs, test_prefs, ...",
    "helpsteer": "train.jsonl.gz and validation.jsonl.gz at the top level",
    "orca": "data/train-00000-of-00001.parquet",
}


class DataError(BadInput, ValueError):
    """The dataset config or the data itself cannot be used; the message names the bad value."""


@dataclass
class Splits:
    train: list[Record]
    heldout: list[Record]
    info: dict = field(default_factory=dict)


def _opt(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg.key`` for a DictConfig or dict (or None: the adapters' defaults), ``default`` when absent or null."""
    if cfg is None:
        return default
    value = cfg.get(key)
    return default if value is None else value


def _record(prompt, chosen=None, rejected=None, system=None, chosen_score=None, rejected_score=None, source_id=""):
    return {
        "prompt": prompt,
        "system": system if system and system.strip() else None,  # "" (most Orca rows) means no system prompt
        "chosen": chosen,
        "rejected": rejected,
        "chosen_score": chosen_score,
        "rejected_score": rejected_score,
        "source_id": str(source_id),
    }


def prompt_hash(prompt: str) -> str:
    """SHA-256 hex of the prompt: UltraFeedback's own ``prompt_id`` convention, reused where the hub has no id."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


# ---- adapters: hub rows -> records ------------------------------------------------------------------------------
# Adapters only map fields; they mark ties (``_tie``), the Orca card filter (``_card_ok``), the un-folded user text
# (``_user``) and merged rows (``_rows``) for the filter stage, which applies the config and strips these keys.
def adapt_ultrafeedback(rows: Sequence[dict], cfg: Any = None) -> list[Record]:
    """HuggingFaceH4/ultrafeedback_binarized: the last message of chosen/rejected is the answer; a tie is
    ``score_chosen == score_rejected`` (the rejected answer was drawn at random and may share the top score)."""
    pf = _opt(cfg, "prompt_field", "prompt")
    out = []
    for i, r in enumerate(rows):
        sc, sr = r.get("score_chosen"), r.get("score_rejected")
        rec = _record(r[pf], _last_content(r["chosen"]), _last_content(r["rejected"]), chosen_score=sc,
                      rejected_score=sr, source_id=r.get("prompt_id") or i)
        rec["_tie"] = sc is not None and sc == sr
        out.append(rec)
    return out


def _last_content(messages: list[dict] | None) -> str | None:
    return messages[-1]["content"] if messages else None


def adapt_helpsteer(rows: Sequence[dict], cfg: Any = None) -> list[Record]:
    """nvidia/HelpSteer: one response per row. Rows sharing a prompt (anywhere in the split, not only consecutive)
    become one record, in order of first appearance (deterministic de-duplication); the response with the highest
    mean of ``rank_by`` ratings is chosen, the lowest rejected (first/last row among equals). A single-response
    prompt has no pair (rejected None); a group whose best and worst score are equal is a tie."""
    pf = _opt(cfg, "prompt_field", "prompt")
    rank_by = list(_opt(cfg, "rank_by", ["helpfulness"]))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[pf], []).append(r)
    out = []
    for prompt, group in groups.items():
        scores = [sum(float(r[k]) for k in rank_by) / len(rank_by) for r in group]
        order = sorted(range(len(group)), key=lambda j: -scores[j])  # stable: equal scores keep row order
        best, worst = order[0], order[-1]
        paired = len(group) > 1
        rec = _record(prompt, group[best]["response"], group[worst]["response"] if paired else None,
                      chosen_score=scores[best], rejected_score=scores[worst] if paired else None,
                      source_id=prompt_hash(prompt or ""))
        rec["_tie"] = paired and scores[best] == scores[worst]
        rec["_rows"] = len(group)
        out.append(rec)
    return out


def adapt_orca(rows: Sequence[dict], cfg: Any = None) -> list[Record]:
    """argilla/distilabel-intel-orca-dpo-pairs: ``input`` is the user prompt, ``system`` an optional system prompt.

    ``system: prepend`` folds a non-empty system prompt into the prompt text as ``"{system}\\n\\n{input}"``: the
    answers were generated and judged under it (e.g. "explain like I'm five", "think step by step"), and neither
    the RM-Gemma chat template (it rejects system turns) nor the pipeline (it passes only ``prompt``) has another
    place for it. ``system: drop`` keeps ``input`` alone. The source id is the row index in the hub split; the
    rejected score is the lower of the judge's two ``rating`` values (chosen_score is the higher one)."""
    pf = _opt(cfg, "prompt_field", "input")
    fold = _opt(cfg, "system", "prepend") == "prepend"
    out = []
    for i, r in enumerate(rows):
        user, system = r[pf], r.get("system") or ""
        prompt = f"{system}\n\n{user}" if fold and system.strip() and user and user.strip() else user
        rating = [x for x in (r.get("rating") or []) if x is not None]
        rec = _record(prompt, r["chosen"], r["rejected"], system=system, chosen_score=r.get("chosen_score"),
                      rejected_score=min(rating) if len(rating) == 2 else None, source_id=i)
        rec["_user"] = user
        rec["_tie"] = r.get("status") == "tie"
        # The dataset card's recommended subset (5,922 rows of 12,859).
        rec["_card_ok"] = (r.get("status") != "tie" and (r.get("chosen_score") or 0) >= 8
                           and not r.get("in_gsm8k_train"))
        out.append(rec)
    return out


def adapt_embedded(rows: Sequence[dict], cfg: Any = None) -> list[Record]:
    return [_record(r["prompt"], r["chosen"], r["rejected"], source_id=r["id"]) for r in rows]


def adapt_file(rows: Sequence[dict], cfg: Any = None) -> list[Record]:
    """A user's JSONL/CSV rows: the prompt from ``prompt_field``; chosen/rejected (optional: prompts alone train a
    prompter against a pretrained RM) from ``chosen_field``/``rejected_field``; an empty cell counts as absent."""
    pf, cf, rf, idf = (_opt(cfg, k) for k in ("prompt_field", "chosen_field", "rejected_field", "id_field"))
    pf = pf or "prompt"

    def text(r: dict, key: str | None) -> str | None:
        v = r.get(key) if key else None
        return v if isinstance(v, str) and v.strip() else None

    return [_record(r[pf] if isinstance(r[pf], str) else "", text(r, cf), text(r, rf),
                    source_id=r.get(idf, i) if idf else i) for i, r in enumerate(rows)]


ADAPTERS: dict[str, Callable[..., list[Record]]] = {
    "embedded": adapt_embedded,
    "file": adapt_file,
    "ultrafeedback": adapt_ultrafeedback,
    "helpsteer": adapt_helpsteer,
    "orca": adapt_orca,
}


def required_columns(cfg: Any) -> list[str]:
    """The hub columns the adapter reads under this config (a copy lacking one is a DataError)."""
    pf, adapter = cfg.prompt_field, cfg.adapter
    if adapter == "ultrafeedback":
        return [pf, "prompt_id", "chosen", "rejected", "score_chosen", "score_rejected"]
    if adapter == "helpsteer":
        return [pf, "response", *_opt(cfg, "rank_by", ["helpfulness"])]
    if adapter == "orca":
        return [pf, "system", "chosen", "rejected", "rating", "chosen_score", "status"] + (
            ["in_gsm8k_train"] if _opt(cfg, "card_filter", False) else [])
    return [pf]


# ---- options, filtering and splitting ---------------------------------------------------------------------------
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
    ties, dedup, card = _opt(cfg, "ties", "keep"), _opt(cfg, "dedup", False), _opt(cfg, "card_filter", False)
    lo, hi, resp = (_opt(cfg, k) for k in LENGTH_KEYS)
    seen: set[str] = set()
    kept = []
    for r in records:
        dropped["duplicate"] += r.get("_rows", 1) - 1  # HelpSteer rows merged into their prompt's record
        if r.get("_tie") and ties == "unpair":
            r = r | {"rejected": None, "rejected_score": None}
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


# ---- loading -----------------------------------------------------------------------------------------------------
def _check_rows(rows: list[dict], prompt_field: str, where: str) -> None:
    if not rows:
        raise DataError(f"dataset {where} is empty: no rows to train or evaluate on.")
    if prompt_field not in rows[0]:
        raise DataError(
            f"dataset {where} has no prompt field '{prompt_field}'; its columns are: {', '.join(sorted(rows[0]))}. "
            "Set dataset.prompt_field to one of them."
        )


def read_embedded(path: str | Path | None = None, asset: str | None = None) -> list[dict]:
    """A shipped preference file (``dataset.asset`` in alignpro/assets), or ``path`` in the same layout."""
    if path:
        path = Path(path)
    else:
        path = ASSETS_DIR / asset if asset else EMBEDDED_PREFS
        if not path.is_file():
            shipped = sorted(p.name for p in ASSETS_DIR.glob("*_prefs.jsonl"))
            raise DataError(f"dataset.asset '{asset}' is not shipped; valid: {', '.join(shipped)}")
    if not path.is_file():
        raise DataError(f"dataset.path '{path}' does not exist (expected a JSONL file of preference rows).")
    return read_table(path)


def read_table(path: str | Path) -> list[dict]:
    """Rows of a JSONL (one object per line) or CSV (header row) file; a bad line is a DataError naming it."""
    import csv

    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        return [dict(r) for r in csv.DictReader(text.splitlines())]
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"'{path}' line {n} is not valid JSON ({err.msg}); one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"'{path}' line {n} is a JSON {type(row).__name__}, not an object with named fields")
        rows.append(row)
    return rows


def _check_fields(rows: list[dict], cfg: Any, where: str) -> None:
    """Every row of a user file has the prompt field; the chosen/rejected fields, when named, exist."""
    _check_rows(rows, cfg.prompt_field, where)
    for n, r in enumerate(rows, start=1):
        if cfg.prompt_field not in r:
            raise DataError(f"dataset {where} row {n} has no prompt field '{cfg.prompt_field}'; its fields are: "
                            f"{', '.join(sorted(r))}.")
    columns = set().union(*rows)
    for key in ("chosen_field", "rejected_field", "id_field"):
        field_name = cfg.get(key)
        if field_name and field_name not in columns:
            raise DataError(f"dataset {where} has no field '{field_name}' (dataset.{key}); its fields are: "
                            f"{', '.join(sorted(columns))}. Set dataset.{key}=null if the file has none.")


def read_hub(cfg: Any) -> tuple[str, dict[str, list[dict]]]:
    """``load_dataset`` on ``dataset.path`` (if set) or ``dataset.hub_id``; returns (where, {split: rows}) for the
    configured splits, restricted to the columns the adapter reads. Bad path/split/column -> DataError."""
    from datasets import load_dataset

    path = cfg.get("path")
    where = str(path) if path else cfg.hub_id
    layout = LAYOUTS.get(cfg.adapter, "the hub repo's files")
    if path and not Path(path).exists():
        raise DataError(f"dataset.path '{path}' does not exist; point it at a local copy of {cfg.hub_id} laid out "
                        f"like the hub repo ({layout}), or set dataset.path=null to use the hub.")
    try:
        ds = load_dataset(where)
    except (OSError, ValueError) as err:  # EmptyDatasetError/DatasetNotFoundError are OSErrors, offline hub too
        hint = (f"it must hold a copy of {cfg.hub_id} laid out like the hub repo ({layout})" if path else
                f"no hub access? download it elsewhere and set dataset.path to the copy ({layout})")
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"dataset '{where}' could not be loaded ({first}); {hint}.") from err
    wanted = [s for s in (cfg.train_split, cfg.get("heldout_split")) if s]
    for split in wanted:
        if split not in ds:
            which = "train_split" if split == cfg.train_split else "heldout_split"
            raise DataError(f"dataset '{where}' has no split '{split}' (dataset.{which}); its splits are: "
                            f"{', '.join(ds)}.")
    need = list(dict.fromkeys(required_columns(cfg)))
    out = {}
    for split in wanted:
        missing = [c for c in need if c not in ds[split].column_names]
        if missing:
            raise DataError(f"dataset '{where}' split '{split}' has no column '{missing[0]}' (adapter "
                            f"'{cfg.adapter}' reads: {', '.join(need)}); its columns are: "
                            f"{', '.join(ds[split].column_names)}.")
        out[split] = ds[split].select_columns(need).to_list()
    return where, out


def load_splits(cfg: DatasetConfig) -> Splits:
    """Factory for the ``dataset`` config group: read, adapt, split, filter (see the module docstring)."""
    check_options(cfg)
    adapt = ADAPTERS[cfg.adapter]
    if cfg.source == "embedded":
        where = str(cfg.get("path") or cfg.get("asset") or EMBEDDED_PREFS.name)
        rows = read_embedded(cfg.get("path"), cfg.get("asset"))
        _check_rows(rows, cfg.prompt_field, f"'{where}'")
        rows = [dict(r, prompt=r[cfg.prompt_field]) for r in rows]
        names = dict.fromkeys(("train", "heldout"), f"seeded (split_seed={cfg.split_seed})")
        train, held = seeded_split(adapt(rows, cfg), cfg.heldout, cfg.split_seed)
    elif cfg.source == "file":
        where = str(cfg.path)
        rows = read_table(cfg.path)
        _check_fields(rows, cfg, f"'{where}'")
        names = dict.fromkeys(("train", "heldout"), f"seeded (split_seed={cfg.split_seed})")
        train, held = seeded_split(adapt(rows, cfg), cfg.heldout, cfg.split_seed)
    else:
        where, rows_by_split = read_hub(cfg)
        train_rows = rows_by_split[cfg.train_split]
        _check_rows(train_rows, cfg.prompt_field, f"'{where}' split '{cfg.train_split}'")
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


# ---- inspection CLI ------------------------------------------------------------------------------------------------
def compose_config(overrides: Sequence[str]):
    """The Hydra config ``python -m alignpro.train <overrides>`` would see (without Hydra's runtime block)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def _short(value: Any, chars: int) -> Any:
    if isinstance(value, str) and len(value) > chars:
        return f"{value[:chars]}… [{len(value)} chars]"
    return value


def describe(splits: Splits, n: int = 3, side: str = "train", chars: int = 200) -> str:
    """Human-readable counts per split and the first ``n`` records of one side (the CLI's output)."""
    info = splits.info
    rows = [("split", "split"), ("rows", "rows read"), ("tied", "ties found")]
    rows += [(k, f"dropped: {k}") for k in DROP_RULES] + [("records", "records kept"), ("pairs", "with a pair")]
    table = [("", "train", "heldout")]
    for key, label in rows:
        table.append((label, *(str(info[s]["dropped"][key] if key in DROP_RULES else info[s][key])
                               for s in ("train", "heldout"))))
    w0, w1 = (max(len(row[i]) for row in table) for i in (0, 1))
    lines = [f"dataset {info['name']} ({info['source']}: {info['from']})"]
    lines += [f"  {a.ljust(w0)}  {b.ljust(w1)}  {c}".rstrip() for a, b, c in table]
    records = splits.train if side == "train" else splits.heldout
    lines.append(f"first {min(n, len(records))} {side} records:")
    lines += [json.dumps({k: _short(v, chars) for k, v in r.items()}, ensure_ascii=False) for r in records[:n]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m alignpro.data dataset=<name> [dataset.path=<dir>] [overrides] [--n 3] [--side heldout]``."""
    parser = ArgumentParser(prog="python -m alignpro.data", description="Load a dataset the way "
                                     "alignpro.train does and print row counts per split and filter rule, and the "
                                     "first normalised records.")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=helpsteer dataset.path=DIR")
    parser.add_argument("--n", type=int, default=3, help="records to print (default 3)")
    parser.add_argument("--side", choices=("train", "heldout"), default="train", help="which side to print from")
    parser.add_argument("--chars", type=int, default=200, help="truncate printed strings to this many characters")
    args = parser.parse_intermixed_args(argv)
    from datasets import disable_progress_bars

    for flag in ("n", "chars"):
        if getattr(args, flag) < 0:
            raise BadInput(f"--{flag} {getattr(args, flag)} is invalid: it must be ≥ 0")
    disable_progress_bars()
    sys.stdout.reconfigure(errors="backslashreplace")  # non-ASCII prompts on a non-UTF-8 terminal
    cfg = typed(compose_config(args.overrides))
    print(describe(load_splits(cfg.dataset), args.n, args.side, args.chars))


if __name__ == "__main__":
    run_cli(main)
