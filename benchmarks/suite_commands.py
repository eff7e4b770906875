"""What a command the tests start costs, cold (``subprocess``: a new interpreter imports torch, transformers, TRL ...)
against warm (tests/cli.py: forked from a server that imported them once), side by side in one run.

    .venv/bin/python -m benchmarks.suite_commands            # 5 pairs of each command
    .venv/bin/python -m benchmarks.suite_commands --runs 3

The pairs alternate (cold, warm, cold, warm ...) so load on the machine hits both alike. Each command's output is
checked to be the same cold and warm. Writes benchmarks/results/suite-commands-<date>-<time>.json and prints a table
ending with the ratio line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # as under `make test` (tests/conftest.py)
os.environ.setdefault("WANDB_SILENT", "true")

from tests import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "--cfg job": ("alignpro.train", "experiment=smoke", "--cfg", "job"),
    "refused value (exit 2)": ("alignpro.train", "experiment=smoke", "lam=-1", "hydra.run.dir={tmp}/refused"),
    "smoke run, 1 step": ("alignpro.train", "experiment=smoke", "logger=none", "trainer.max_steps=1",
                          "eval.n_prompts=2", "hydra.run.dir={tmp}/run"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="pairs per command (default 5)")
    args = ap.parse_args()
    start = time.perf_counter()
    cli.run("alignpro.train", "--cfg", "job", check=True)  # the fork server's own start, paid once per test process
    server_start = time.perf_counter() - start
    rows = {}
    for name, argv in COMMANDS.items():
        times: dict[str, list[float]] = {"cold": [], "warm": []}
        for _ in range(args.runs):
            for mode in ("cold", "warm"):
                with tempfile.TemporaryDirectory() as tmp:
                    t = time.perf_counter()
                    proc = cli.run(*[a.format(tmp=tmp) for a in argv], cold=mode == "cold")
                    times[mode].append(time.perf_counter() - t)
                    if "refused" in name:
                        assert proc.returncode == 2, proc.stderr
                    else:
                        assert proc.returncode == 0, proc.stderr[-2000:]
        rows[name] = {m: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "runs": v}
                      for m, v in times.items()}
        rows[name]["ratio_warm_over_cold_median_of_pairs"] = statistics.median(
            w / c for c, w in zip(times["cold"], times["warm"], strict=True))
    res = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.processor() or
           platform.machine(), "cpus": os.cpu_count(), "runs": args.runs, "fork_server_start_s": server_start,
           "commands": rows}
    out = ROOT / "benchmarks" / "results" / f"suite-commands-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2))
    print(f"fork server start (once per test process): {server_start:.1f} s")
    print("| command | cold, median (min–max) | warm, median (min–max) | warm / cold, median of pairs |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        c, w = r["cold"], r["warm"]
        print(f"| {name} | {c['median_s']:.2f} s ({c['min_s']:.2f}–{c['max_s']:.2f}) | {w['median_s']:.2f} s "
              f"({w['min_s']:.2f}–{w['max_s']:.2f}) | {r['ratio_warm_over_cold_median_of_pairs']:.2f} |")
    saved = sum(r["cold"]["median_s"] - r["warm"]["median_s"] for r in rows.values()) / len(rows)
    print(f"ratio: a warm command saves {saved:.1f} s on average over these {len(rows)} commands; written: {out}")


if __name__ == "__main__":
    main()
