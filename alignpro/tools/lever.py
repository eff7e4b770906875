"""How far can the wording of a prompt move the reward? The lever a prompter pulls, measured before any training.

    python -m alignpro.tools.lever experiment=steer                 # the steerable world's menu, 48 train prompts
    python -m alignpro.tools.lever dataset=embedded --n 24 --instruction "Be brief." --instruction "Use a list."

For each prompt x of the **train** split (never the held-out prompts: the probe guides design choices), the frozen
model answers x itself and x followed by each instruction (the ``sft.instructions`` menu unless ``--instruction``
is given); the reward scores every answer against x. The answers are sampled as in training (``frozen.sampling``)
or, with ``--sampling eval``, as the held-out evaluation samples them (``eval.sampling``): an instruction's gain can
depend on it. Printed per instruction: mean reward, the paired difference to answering x (same prompts; bootstrap
95 % interval over prompts) and the answers' mean length in words. Theorem
6.1 bounds what any prompter can gain by how far π_F(·|x′) can move from π_F(·|x): a lever near 0 means no prompter
can help, whatever RL does. ``--out`` writes the numbers as JSON, with every prompt's x, x′, answer and reward.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from alignpro.run.directory import write_atomic
from alignpro.run.errors import ArgumentParser, BadInput, run_cli


def probe_prompts(train: list[dict], n: int) -> list[dict]:
    """The probe's train records: the first ``n``, or, where the dataset has kinds, the first ``n`` of each kind."""
    kinds = list(dict.fromkeys(r.get("kind") for r in train))
    if kinds == [None]:
        return train[:n]
    return [r for kind in kinds for r in [r for r in train if r.get("kind") == kind][:n]]


SAMPLINGS = ("train", "eval")  # whose sampling the frozen model answers with: frozen.sampling or eval.sampling


def probe(cfg, instructions: Sequence[str], n: int, device: str = "cpu", sampling: str = "train") -> dict:
    """Answers to x and to x + instruction for ``n`` train prompts (``n`` per kind where the data has kinds), scored
    r(x, y), paired per prompt.

    Each row keeps its per-prompt records, ``samples`` (in prompt order): x, its kind, what the frozen model
    answered (``x_prime``: x itself in the row of x, x + " " + instruction in the others), its answer y and r(x, y).
    Where the data has kinds, ``by_kind`` holds the same numbers per kind and ``contextual`` the world's test."""
    from transformers import set_seed

    from alignpro.data.preferences import load_splits
    from alignpro.methods.rollout import roll_out
    from alignpro.models.frozen import build_frozen
    from alignpro.models.generation import GenerationEngine
    from alignpro.models.prompter import compose_rewrite
    from alignpro.models.reward import build_reward
    from alignpro.report.statistics import mean, paired_difference

    splits = load_splits(cfg.dataset)
    reward = build_reward(cfg.reward, splits.train, splits.heldout, device)
    frozen = build_frozen(cfg.frozen, device, engine=GenerationEngine.from_config(cfg.generation))
    records = probe_prompts(splits.train, n)
    answer = None  # None: the frozen model's own (training) sampling
    if sampling == "eval":
        from alignpro.report.evaluate import eval_samplings

        answer = eval_samplings(cfg.eval, cfg.frozen.max_new_tokens, cfg.prompter.max_new_tokens)[0]
    xs, kinds = [r["prompt"] for r in records], [r.get("kind") for r in records]
    rows = []
    base_r = None
    for instr in (None, *instructions):
        set_seed(cfg.seed)  # the same random stream for every variant
        rewrites = None if instr is None else [compose_rewrite(x, instr, "append") for x in xs]
        out = roll_out(xs, reward, x_prime=rewrites, responder=frozen, sampling=answer,
                       desc=f"answer x + {instr!r}" if instr else "answer x")
        row = {"instruction": instr, "reward_mean": mean(out.r), "words": mean([len(a.split()) for a in out.y]),
               "example": {"x_prime": out.asked[0], "y": out.y[0]},
               "samples": [{"x": x, "kind": k, "x_prime": xp, "y": y, "r": r}
                           for x, k, xp, y, r in zip(out.x, kinds, out.asked, out.y, out.r, strict=True)]}
        if instr is None:
            base_r = out.r
        else:
            row["vs_x"] = paired_difference(out.r, base_r, seed=cfg.seed)
        rows.append(row)
    res = {"n_prompts": len(xs), "split": "train", "frozen": cfg.frozen.name, "reward": cfg.reward.name,
           "dataset": cfg.dataset.name, "max_new_tokens": cfg.frozen.max_new_tokens, "sampling": sampling,
           "rows": rows,
           "reward_model": getattr(reward, "stats", {})}
    if len(set(kinds)) > 1 and instructions:
        res["by_kind"], res["contextual"] = contextual_test(rows, kinds, cfg.seed)
    return res


def contextual_test(rows: list[dict], kinds: list, seed: int = 0) -> tuple[dict, dict]:
    """Per kind: each variant's mean reward and paired difference to x; then the test that makes a world contextual.

    Each kind's best instruction (highest mean reward on that kind) must beat, on that kind's prompts, the best
    instruction of every other kind, with a paired 95 % interval above 0. Then no single instruction is best for
    every kind, so a prompter that writes one fixed instruction (a system prompt) leaves reward on the table, and
    only one that reads x can collect it."""
    from alignpro.report.statistics import mean, paired_difference

    def rewards(row: dict, kind) -> list[float]:
        return [s["r"] for s, k in zip(row["samples"], kinds, strict=True) if k == kind]

    by_kind: dict = {}
    for kind in dict.fromkeys(kinds):
        base = rewards(rows[0], kind)
        by_kind[kind] = [{"instruction": row["instruction"], "reward_mean": mean(rewards(row, kind)),
                          "words": mean([len(s["y"].split()) for s, k in zip(row["samples"], kinds, strict=True)
                                         if k == kind]),
                          **({"vs_x": paired_difference(rewards(row, kind), base, seed=seed)}
                             if row["instruction"] else {})}
                         for row in rows]
    best = {kind: max(cells[1:], key=lambda c: c["reward_mean"])["instruction"] for kind, cells in by_kind.items()}
    row_of = {row["instruction"]: row for row in rows}
    checks = []
    for kind, mine in best.items():
        for other_kind, theirs in best.items():
            if other_kind == kind:
                continue
            d = (paired_difference(rewards(row_of[mine], kind), rewards(row_of[theirs], kind), seed=seed)
                 if mine != theirs else None)
            checks.append({"kind": kind, "best": mine, "other_kind": other_kind, "other_best": theirs,
                           "diff": d, "passed": bool(d and d["diff_ci_low"] > 0)})
    return by_kind, {"best": best, "checks": checks, "passed": all(c["passed"] for c in checks)}


def table(res: dict) -> str:
    lines = [f"lever probe: {res['frozen']} answering {res['n_prompts']} {res['split']} prompts of {res['dataset']} "
             f"({res['max_new_tokens']} new tokens, {res.get('sampling', 'train')} sampling), reward {res['reward']}",
             "| x' | mean r(x, y) | r(x') − r(x) [95 % CI] | words |", "|---|---|---|---|"]
    for row in res["rows"]:
        lines.append(f"| {variant(row['instruction'])} | {row['reward_mean']:.2f} | {interval(row.get('vs_x'))} "
                     f"| {row['words']:.0f} |")
    if "by_kind" in res:
        rm = res.get("reward_model", {})
        if "heldout_accuracy_by_kind" in rm:  # how far the reward itself tells the kinds' forms apart
            lines += ["", f"reward model: held-out pairwise accuracy {rm['heldout_accuracy']:.2f} (" + ", ".join(
                f"{k} {v:.2f}" for k, v in rm["heldout_accuracy_by_kind"].items()) + ")"]
        lines += ["", kind_table(res), "", verdict(res["contextual"])]
    return "\n".join(lines)


def variant(instruction: str | None) -> str:
    return f"x + \"{instruction}\"" if instruction else "x"


def interval(d: dict | None) -> str:
    return f"{d['diff_mean']:+.2f} [{d['diff_ci_low']:+.2f}, {d['diff_ci_high']:+.2f}]" if d else "—"


def kind_table(res: dict) -> str:
    """Kind × instruction: mean r(x, y) and the paired difference to x on that kind's prompts; each kind's best
    instruction in bold."""
    kinds = list(res["by_kind"])
    best = res["contextual"]["best"]
    lines = ["per kind: mean r(x, y), r(x') − r(x) [95 % CI]; **best instruction of the kind**",
             "| x' | " + " | ".join(f"{k} (n={sum(s['kind'] == k for s in res['rows'][0]['samples'])})"
                                    for k in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    for i, row in enumerate(res["rows"]):
        cells = []
        for k in kinds:
            c = res["by_kind"][k][i]
            text = f"{c['reward_mean']:.2f}" + (f" {interval(c['vs_x'])}" if "vs_x" in c else "")
            cells.append(f"**{text}**" if row["instruction"] and best[k] == row["instruction"] else text)
        lines.append(f"| {variant(row['instruction'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(test: dict) -> str:
    """One line per check, then the world's verdict."""
    lines = []
    for c in test["checks"]:
        if c["diff"] is None:
            lines.append(f"- {c['kind']}: its best, \"{c['best']}\", is also {c['other_kind']}'s best: FAIL")
        else:
            lines.append(f"- {c['kind']}: \"{c['best']}\" − {c['other_kind']}'s best \"{c['other_best']}\" = "
                         f"{interval(c['diff'])}: {'pass' if c['passed'] else 'FAIL'}")
    head = ("contextual: yes. Each kind's best instruction beats every other kind's best on that kind (paired 95 % "
            "interval above 0), so no single instruction is best for every kind." if test["passed"] else
            "contextual: NO. Some kind's best instruction does not beat another kind's best on that kind with a "
            "paired interval above 0, so a single fixed instruction may do as well as rewriting per query.")
    return "\n".join([head, *lines])


def main(argv: Sequence[str] | None = None) -> dict:
    ap = ArgumentParser(prog="python -m alignpro.tools.lever", description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, as for alignpro.train (e.g. experiment=steer)")
    ap.add_argument("--instruction", action="append", default=None,
                    help="an instruction to append to x (repeatable); default: the config's sft.instructions")
    ap.add_argument("--n", type=int, default=48,
                    help="train prompts to probe (default 48), per kind where the dataset has kinds (dataset=context)")
    ap.add_argument("--sampling", default="train", choices=SAMPLINGS,
                    help="answer with the training sampling (frozen.sampling, the default) or the evaluation's "
                         "(eval.sampling)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_intermixed_args(argv)
    from alignpro.config.compose import compose_config
    from alignpro.config.validate import validate
    from alignpro.methods.rl import quiet_library_noise

    if args.n < 1:
        raise BadInput(f"--n {args.n} is invalid: at least 1 prompt")
    sys.stdout.reconfigure(errors="backslashreplace")
    cfg = validate(compose_config(args.overrides))
    from alignpro.methods.sft import instruction_menu

    menu = args.instruction or instruction_menu(cfg.sft)
    quiet_library_noise()
    from alignpro.models.assets import pick_device

    res = probe(cfg, menu, args.n, pick_device(cfg.device), args.sampling)
    print(table(res))
    if args.out:
        write_atomic(Path(args.out), json.dumps(res, indent=2, ensure_ascii=False, default=str))
    return res


if __name__ == "__main__":
    run_cli(main)
