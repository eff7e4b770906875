"""Generated parts of the docs: the README's demo block, from a finished `make demo` sweep.

    .venv/bin/python -m tests.docs_sync demo <sweep dir> [--machine "2 cores, 24 GiB, no GPU"]

reads the sweep's ``comparison.json`` and ``comparison.md`` (alignpro/report/compare.py writes both), keeps the
parts the README shows in ``docs/demo-result.json`` (with the date, the command, the machine and the commit the runs
recorded), and rewrites the README between ``<!-- demo:start -->`` and ``<!-- demo:end -->`` from that JSON alone.
tests/test_docs.py renders the block again from the JSON and fails on any hand edit, so every number the README
shows about the demo has one source: a real run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULT = ROOT / "docs" / "demo-result.json"
START, END = "<!-- demo:start -->", "<!-- demo:end -->"
COMMAND = "make demo"
PAIR = "alignpro - no_finetune"  # the one paired difference the README shows


def machine() -> str:
    """This host in one line: cores, CPU model and vector units, memory, GPU (Linux /proc; a fallback elsewhere)."""
    cores = os.cpu_count() or 0
    model, flags, mem = platform.processor() or "CPU", set(), None
    try:
        info = Path("/proc/cpuinfo").read_text()
        if m := re.search(r"^model name\s*:\s*(.+)$", info, re.M):
            model = m.group(1).strip()
        if m := re.search(r"^flags\s*:\s*(.+)$", info, re.M):
            flags = set(m.group(1).split())
        if m := re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M):
            mem = int(m.group(1)) / 2**20
    except OSError:
        pass
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    parts = [f"{cores} cores ({model}{', ' + vector if vector else ''})"]
    if mem:
        parts.append(f"{mem:.0f} GiB")
    return ", ".join(parts + [gpu])


def md_labels(md: str) -> list[str]:
    """The arm labels of comparison.md's first table, in its row order (comparison.json's arms, same order)."""
    table = md.split("| paired difference")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| arm ")]
    return [row.split(" | ")[0].removeprefix("| ") for row in rows]


def run_git(comparison: dict) -> dict:
    """The commit the runs recorded (run_info.json): the code that produced the numbers, not today's checkout."""
    for by_seed in comparison.get("runs", {}).values():
        for run_dir in by_seed.values():
            path = Path(run_dir) / "run_info.json"
            if path.is_file():
                return json.loads(path.read_text(encoding="utf-8")).get("git", {})
    return {}


def demo_result(sweep: str | Path, machine_line: str | None = None) -> dict:
    """The parts of a finished demo sweep the README shows, with where they came from."""
    sweep = Path(sweep)
    path = sweep / "comparison.json"
    comparison = json.loads(path.read_text(encoding="utf-8"))
    labels = md_labels((sweep / "comparison.md").read_text(encoding="utf-8"))
    if len(labels) != len(comparison["arms"]):
        raise ValueError(f"{sweep}/comparison.md shows {len(labels)} arms, comparison.json {len(comparison['arms'])}")
    arms = {}
    for (arm, a), shown in zip(comparison["arms"].items(), labels, strict=True):
        arms[arm] = {"label": shown, "mean": a["mean"], "ci_low": a["ci_low"],
                     "ci_high": a["ci_high"], "n": a["n"], "seeds": a["seeds"]}
    pair = comparison["pairs"].get(PAIR)
    if pair is None:
        raise ValueError(f"{path} has no '{PAIR}' pair: not a demo sweep")
    keep = ("diff_mean", "diff_ci_low", "diff_ci_high", "n_pairs", "share_a_better", "seeds")
    return {
        "command": COMMAND,
        "date": datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d"),
        "machine": machine_line or machine(),
        "git": run_git(comparison),
        "arms": arms,
        "pairs": {PAIR: {k: pair[k] for k in keep if k in pair}},
        "sentence": comparison["sentence"],
    }


def demo_block(result: dict) -> str:
    """The README's demo block, from docs/demo-result.json alone (tests/test_docs.py renders it again)."""
    p = result["pairs"][PAIR]
    lines = ["| arm | mean r(x, y) | 95 % CI | n |", "|---|---|---|---|"]
    for a in result["arms"].values():
        lines.append(f"| {a['label']} | {a['mean']:.2f} | [{a['ci_low']:.2f}, {a['ci_high']:.2f}] | {a['n']} |")
    lines.append(f"| **Align-Pro − no fine-tuning**, paired | **{p['diff_mean']:+.2f}** | "
                 f"[{p['diff_ci_low']:+.2f}, {p['diff_ci_high']:+.2f}] | {p['n_pairs']} pairs |")
    sha = result.get("git", {}).get("sha", "")[:7] or "unknown"
    dirty = "+dirty" if result.get("git", {}).get("dirty") else ""
    source = (f"<sub>`{result['command']}`, {result['date']}, {result['machine']}, commit `{sha}{dirty}`: "
              "[docs/demo-result.json](docs/demo-result.json), written by `python -m tests.docs_sync demo`</sub>")
    return "\n".join([*lines, "", f"{result['sentence']} {source}"])


def readme_block(text: str) -> str:
    """What the README holds between the demo markers (stripped)."""
    if START not in text or END not in text:
        raise ValueError(f"README.md lacks the markers {START} / {END}")
    return text[text.index(START) + len(START): text.index(END)].strip("\n")


def write_readme_block(result: dict, readme: Path = README) -> None:
    text = readme.read_text(encoding="utf-8")
    readme_block(text)  # the markers exist
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{demo_block(result)}\n{END}{tail}", encoding="utf-8")


def sync_demo(sweep: str | Path, machine_line: str | None = None) -> dict:
    """docs/demo-result.json and the README block from a finished `make demo` sweep."""
    result = demo_result(sweep, machine_line)
    RESULT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_readme_block(result)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.docs_sync", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    demo = sub.add_parser("demo", help="README demo block + docs/demo-result.json from a finished demo sweep")
    demo.add_argument("sweep", help="the sweep dir of a finished `make demo` (outputs/demo/<time>)")
    demo.add_argument("--machine", default=None, help="the machine it ran on, if not this one")
    args = ap.parse_args(argv)
    result = sync_demo(args.sweep, args.machine)
    print(demo_block(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
