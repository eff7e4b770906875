"""How far can the wording of a prompt move the reward? The lever a prompter pulls, measured before any training.

    python -m alignpro.tools.lever experiment=steer                 # the steerable world's menu, 48 train prompts
    python -m alignpro.tools.lever dataset=embedded --n 24 --instruction "Be brief." --instruction "Use a list."

For each prompt x of the **train** split (never the held-out prompts: the probe guides design choices), the frozen
model answers x itself and x followed by each instruction (the ``sft.instructions`` menu unless ``--instruction``
is given); the reward scores every answer against x. Printed per instruction: mean reward, the paired difference
to answering x (same prompts; bootstrap 95 % interval over prompts) and the answers' mean length in words. Theorem
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


def default_menu() -> list[str]:
    """The instruction menu of ``sft=instructions`` (conf/sft/instructions.yaml), for configs without one."""
    from omegaconf import OmegaConf

    from alignpro import CONF_DIR

    return list(OmegaConf.load(Path(CONF_DIR) / "sft" / "instructions.yaml").instructions)


def probe(cfg, instructions: Sequence[str], n: int, device: str = "cpu") -> dict:
    """Answers to x and to x + instruction for the first ``n`` train prompts, scored r(x, y), paired per prompt.

    Each row keeps its per-prompt records, ``samples`` (in prompt order): x, what the frozen model answered
    (``x_prime``: x itself in the row of x, x + " " + instruction in the others), its answer y and r(x, y)."""
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
    xs = [r["prompt"] for r in splits.train[:n]]
    rows = []
    base_r = None
    for instr in (None, *instructions):
        set_seed(cfg.seed)  # the same random stream for every variant
        rewrites = None if instr is None else [compose_rewrite(x, instr, "append") for x in xs]
        out = roll_out(xs, reward, x_prime=rewrites, responder=frozen,
                       desc=f"answer x + {instr!r}" if instr else "answer x")
        row = {"instruction": instr, "reward_mean": mean(out.r), "words": mean([len(a.split()) for a in out.y]),
               "example": {"x_prime": out.asked[0], "y": out.y[0]},
               "samples": [{"x": x, "x_prime": xp, "y": y, "r": r}
                           for x, xp, y, r in zip(out.x, out.asked, out.y, out.r, strict=True)]}
        if instr is None:
            base_r = out.r
        else:
            row["vs_x"] = paired_difference(out.r, base_r, seed=cfg.seed)
        rows.append(row)
    return {"n_prompts": len(xs), "split": "train", "frozen": cfg.frozen.name, "reward": cfg.reward.name,
            "dataset": cfg.dataset.name, "max_new_tokens": cfg.frozen.max_new_tokens, "rows": rows,
            "reward_model": getattr(reward, "stats", {})}


def table(res: dict) -> str:
    lines = [f"lever probe: {res['frozen']} answering {res['n_prompts']} {res['split']} prompts of {res['dataset']} "
             f"({res['max_new_tokens']} new tokens), reward {res['reward']}",
             "| x' | mean r(x, y) | r(x') − r(x) [95 % CI] | words |", "|---|---|---|---|"]
    for row in res["rows"]:
        d = row.get("vs_x")
        diff = f"{d['diff_mean']:+.2f} [{d['diff_ci_low']:+.2f}, {d['diff_ci_high']:+.2f}]" if d else "—"
        name = f"x + \"{row['instruction']}\"" if row["instruction"] else "x"
        lines.append(f"| {name} | {row['reward_mean']:.2f} | {diff} | {row['words']:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    ap = ArgumentParser(prog="python -m alignpro.tools.lever", description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, as for alignpro.train (e.g. experiment=steer)")
    ap.add_argument("--instruction", action="append", default=None,
                    help="an instruction to append to x (repeatable); default: the config's sft.instructions")
    ap.add_argument("--n", type=int, default=48, help="train prompts to probe (default 48)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_intermixed_args(argv)
    from alignpro.config.compose import compose_config
    from alignpro.config.validate import validate
    from alignpro.methods.rl import quiet_library_noise

    if args.n < 1:
        raise BadInput(f"--n {args.n} is invalid: at least 1 prompt")
    sys.stdout.reconfigure(errors="backslashreplace")
    cfg = validate(compose_config(args.overrides))
    menu = args.instruction or list(cfg.sft.instructions or default_menu())
    quiet_library_noise()
    from alignpro.models.assets import pick_device

    res = probe(cfg, menu, args.n, pick_device(cfg.device))
    print(table(res))
    if args.out:
        write_atomic(Path(args.out), json.dumps(res, indent=2, ensure_ascii=False, default=str))
    return res


if __name__ == "__main__":
    run_cli(main)
