"""The golden check of the README's demo numbers: does a fresh `make demo` give what the README shows?

    .venv/bin/python -m tests.verify_demo <sweep dir>          (`make verify` reruns the demo and then runs this)

reads the sweep's ``comparison.json`` (alignpro/report/compare.py writes it) and ``docs/demo-result.json`` (the source
of the README's demo block, tests/docs_sync.py), renders every number the README shows from each, exactly as the
README rounds it (each arm's mean, 95 % interval and n; the paired difference Align-Pro − no fine-tuning, its
interval and number of pairs; the sentence under the table), and exits 1 naming each one that differs, 0 if none does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.docs_sync import PAIR, RESULT


def shown(result: dict) -> dict[str, str]:
    """What the README shows about the demo, each number formatted as ``tests.docs_sync.demo_block`` formats it, by
    name. ``result`` is docs/demo-result.json or a sweep's comparison.json (their arms and pairs share keys)."""
    out: dict[str, str] = {}
    for arm, a in result["arms"].items():
        for key in ("mean", "ci_low", "ci_high"):
            out[f"arm {arm} {key}"] = f"{a[key]:.2f}"
        out[f"arm {arm} n"] = str(a["n"])
    p = result["pairs"].get(PAIR)
    if p is not None:
        for key in ("diff_mean", "diff_ci_low", "diff_ci_high"):
            out[f"pair '{PAIR}' {key}"] = f"{p[key]:+.2f}"
        out[f"pair '{PAIR}' n_pairs"] = str(p["n_pairs"])
    out["sentence"] = result["sentence"]
    return out


def differences(expected: dict, got: dict) -> list[str]:
    """One line per README number that ``got`` (a comparison.json) does not reproduce, or that it lacks."""
    want, have = shown(expected), shown(got)
    lines = [f"{name}: README {value}, rerun {have[name]}" for name, value in want.items()
             if name in have and have[name] != value]
    lines += [f"{name}: README {value}, rerun has none" for name, value in want.items() if name not in have]
    return lines


def verify(sweep: str | Path, expected: str | Path = RESULT) -> list[str]:
    """The differences between a finished demo sweep and the README's numbers (empty: they agree)."""
    got = json.loads((Path(sweep) / "comparison.json").read_text(encoding="utf-8"))
    return differences(json.loads(Path(expected).read_text(encoding="utf-8")), got)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.verify_demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", help="the sweep dir of a finished demo (outputs/demo/<time>, or make verify's)")
    ap.add_argument("--expected", default=str(RESULT), help="the README's numbers (default docs/demo-result.json)")
    args = ap.parse_args(argv)
    comparison = Path(args.sweep) / "comparison.json"
    if not comparison.is_file():
        print(f"verify_demo: {comparison} does not exist: the demo sweep did not finish", file=sys.stderr)
        return 2
    diffs = verify(args.sweep, args.expected)
    n = len(shown(json.loads(Path(args.expected).read_text(encoding="utf-8"))))
    if diffs:
        print(f"verify_demo: {len(diffs)} of the README's {n} demo values differ in {comparison}:", file=sys.stderr)
        for line in diffs:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"verify_demo: all {n} of the README's demo values (numbers and sentence) reproduced by {comparison}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
