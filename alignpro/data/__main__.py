"""``python -m alignpro.data dataset=<name> [dataset.path=<dir>]``: load a dataset the way ``alignpro.train`` does
and print its row counts per split and filter rule, and the first normalised records."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from alignpro.config.compose import compose_config
from alignpro.config.rules import typed
from alignpro.config.schema import Config
from alignpro.data.preferences import DROP_RULES, Splits, load_splits
from alignpro.run.errors import ArgumentParser, BadInput, run_cli


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
    kinds = {s: Counter(r["kind"] for r in getattr(splits, s) if r.get("kind")) for s in ("train", "heldout")}
    if kinds["train"] or kinds["heldout"]:  # a world with kinds of prompts (dataset=context)
        lines.append("  kinds: " + ", ".join(f"{k} {kinds['train'][k]} / {kinds['heldout'][k]}"
                                             for k in dict.fromkeys([*kinds["train"], *kinds["heldout"]])))
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
    cfg = typed(compose_config(args.overrides), Config)
    print(describe(load_splits(cfg.dataset), args.n, args.side, args.chars))


if __name__ == "__main__":
    run_cli(main)
