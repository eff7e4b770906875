"""Where a dataset's rows come from: a shipped preference file (``source: embedded``), the user's JSONL or CSV
(``source: file``) or ``datasets.load_dataset`` on a hub id or a local copy of one (``source: hub``). Each reader
checks what it read (the file, the split names, the columns the adapter needs) and says what to fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignpro.data import DATA_DIR, EMBEDDED_PREFS, DataError
from alignpro.data.adapters import LAYOUTS, required_columns

FILE_SUFFIXES = (".jsonl", ".csv")


def check_rows(rows: list[dict], prompt_field: str, where: str) -> None:
    """There are rows, and the first one has the prompt field."""
    if not rows:
        raise DataError(f"dataset {where} is empty: no rows to train or evaluate on.")
    if prompt_field not in rows[0]:
        raise DataError(
            f"dataset {where} has no prompt field '{prompt_field}'; its columns are: {', '.join(sorted(rows[0]))}. "
            "Set dataset.prompt_field to one of them."
        )


def read_embedded(path: str | Path | None = None, asset: str | None = None) -> list[dict]:
    """A shipped preference file (``dataset.asset`` in alignpro/data), or ``path`` in the same layout."""
    if path:
        path = Path(path)
    else:
        path = DATA_DIR / asset if asset else EMBEDDED_PREFS
        if not path.is_file():
            shipped = sorted(p.name for p in DATA_DIR.glob("*_prefs.jsonl"))
            raise DataError(f"dataset.asset '{asset}' is not shipped; valid: {', '.join(shipped)}")
    if not path.is_file():
        raise DataError(f"dataset.path '{path}' does not exist (expected a JSONL file of preference rows).")
    return read_table(path)


def read_table(path: str | Path) -> list[dict]:
    """Rows of a JSONL (one object per line) or CSV (header row) file; a bad line is a DataError naming it."""
    import csv

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1  # the bytes it failed on: no second read
        raise DataError(f"'{path}' is not UTF-8 text: byte 0x{err.object[err.start]:02x} on line {line} "
                        f"(offset {err.start}); save the file as UTF-8") from None
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


def check_fields(rows: list[dict], cfg: Any, where: str) -> None:
    """Every row of a user file has the prompt field; the id field, when named, exists. A file with neither answer
    field is a prompts-only file (no pairs, nothing to set); a file with one of the two lacks the other."""
    check_rows(rows, cfg.prompt_field, where)
    for n, r in enumerate(rows, start=1):
        if cfg.prompt_field not in r:
            raise DataError(f"dataset {where} row {n} has no prompt field '{cfg.prompt_field}'; its fields are: "
                            f"{', '.join(sorted(r))}.")
    columns = set().union(*rows)
    prompts_only = not any(cfg.get(key) in columns for key in ("chosen_field", "rejected_field"))
    for key in ("chosen_field", "rejected_field", "id_field"):
        field_name = cfg.get(key)
        if key != "id_field" and prompts_only:
            continue
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
