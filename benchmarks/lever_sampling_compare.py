"""The lever per kind under two samplings of the frozen model's answers, on the same train prompts.

    python -m alignpro.tools.lever experiment=context --n 32 --sampling eval --out eval.json
    python benchmarks/lever_sampling_compare.py eval.json benchmarks/results/lever-context-all-samples-20261207.json.gz

The second file is a lever run under the training sampling on a superset of the prompts (``--n 100``: every train
prompt); its samples are cut to the first run's prompts. Prints, per instruction and kind, the mean reward and the
paired difference to x under each sampling, then each sampling's contextual test (alignpro.tools.lever).
"""

import gzip
import json
import sys

from alignpro.tools.lever import contextual_test, verdict


def read(path: str) -> dict:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def on_prompts(rows: list[dict], xs: list[str]) -> list[dict]:
    """The rows' samples of the prompts ``xs``, in that order."""
    out = []
    for row in rows:
        by_x = {s["x"]: s for s in row["samples"]}
        out.append({**row, "samples": [by_x[x] for x in xs]})
    return out


def main(eval_path: str, train_path: str) -> None:
    ev, tr = read(eval_path), read(train_path)
    xs = [s["x"] for s in ev["rows"][0]["samples"]]
    kinds = [s["kind"] for s in ev["rows"][0]["samples"]]
    runs = {f"{tr.get('sampling', 'train')} sampling": on_prompts(tr["rows"], xs),
            f"{ev.get('sampling', 'eval')} sampling": ev["rows"]}
    tests = {name: contextual_test(rows, kinds, 0) for name, rows in runs.items()}
    names = list(runs)
    print(f"the same {len(xs)} train prompts ({', '.join(f'{k} {kinds.count(k)}' for k in dict.fromkeys(kinds))}): "
          "mean r(x, y) per kind, and r(x') − r(x) [95 % CI]")
    print("| x' | kind | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for i, row in enumerate(ev["rows"]):
        for kind in dict.fromkeys(kinds):
            cells = []
            for name in names:
                cell = tests[name][0][kind][i]
                d = cell.get("vs_x")
                cells.append(f"{cell['reward_mean']:.2f}" + (
                    f" ({d['diff_mean']:+.2f} [{d['diff_ci_low']:+.2f}, {d['diff_ci_high']:+.2f}])" if d else ""))
            print(f"| {row['instruction'] or 'x'} | {kind} | " + " | ".join(cells) + " |")
    for name in names:
        print(f"\n{name}: best per kind {tests[name][1]['best']}")
        print(verdict(tests[name][1]))


if __name__ == "__main__":
    main(*sys.argv[1:3])
