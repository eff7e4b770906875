"""What a trained prompter writes, outside the run that trained it.

    python -m alignpro.rewrite outputs/demo/<time>/2 "How do volcanoes form?"
    python -m alignpro.rewrite <run dir> "a prompt" "another" --n 4 --answer

The prompter is the one the run saved (``<run dir>/prompter``: full weights, or a LoRA adapter on its base). That
folder alone works too, wherever it was copied, and so does its W&B model artifact (``wandb:<entity>/<project>/
prompter-<run id>:<version>``). The rewrite settings are the run's own (alignpro/models/trained.py): the
meta-prompt, the system turn, the token limit, how x and the prompter's output are joined (``prompter.rewrite``),
and the evaluation's sampling, seeded with the run's seed. ``--greedy`` takes the argmax instead. ``--answer`` also
has the run's frozen model answer each x′, with the evaluation's sampling. Each text is printed after its tag
(``x:``, ``x′:``, ``y:``), its further lines indented.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alignpro.models.trained import load_trained
from alignpro.run.errors import ArgumentParser, BadInput, run_cli


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m alignpro.rewrite <run dir> <prompt> [<prompt> ...] [--n 1] [--greedy] [--answer]``."""
    parser = ArgumentParser(prog="python -m alignpro.rewrite",
                            description="Print what a run's trained prompter writes for your prompts.")
    parser.add_argument("run_dir", type=Path, help="the run dir of a method=alignpro job, or its prompter/ folder")
    parser.add_argument("prompts", nargs="+", help="prompts x to rewrite")
    parser.add_argument("--n", type=int, default=1, help="rewrites per prompt (default 1)")
    parser.add_argument("--greedy", action="store_true", help="the argmax rewrite instead of a sampled one")
    parser.add_argument("--seed", type=int, default=None, help="the sampling seed (default: the run's seed)")
    parser.add_argument("--answer", action="store_true", help="also print the frozen model's answer to each x'")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise BadInput(f"--n {args.n} is invalid: it must be ≥ 1")
    trained = load_trained(args.run_dir)
    cfg = trained.cfg

    from transformers import set_seed

    from alignpro.methods.rl import quiet_library_noise
    from alignpro.models.assets import pick_device
    from alignpro.models.generation import GenerationEngine
    from alignpro.report.evaluate import eval_samplings

    quiet_library_noise()
    prompter = trained.load()
    rewrite = trained.rewrite_sampling(args.greedy)
    xs = [x for x in args.prompts for _ in range(args.n)]
    set_seed(cfg.seed if args.seed is None else args.seed)
    rewrites = prompter.rewrite(xs, rewrite)
    answers = None
    if args.answer:
        from alignpro.models.frozen import build_frozen

        answer = eval_samplings(cfg.eval, cfg.frozen.max_new_tokens, cfg.prompter.max_new_tokens)[0]
        frozen = build_frozen(cfg.frozen, pick_device(cfg.device), engine=GenerationEngine.from_config(cfg.generation))
        answers = frozen.answer(rewrites, answer)
    for i, x in enumerate(args.prompts):
        print(shown("x", x))
        for j in range(i * args.n, (i + 1) * args.n):
            print(shown("x′", rewrites[j]))
            if answers is not None:
                print(shown("y", answers[j]))


def shown(tag: str, text: str) -> str:
    """``tag: text``, a multi-line text's further lines indented under it, so each tag starts a line."""
    return f"{tag}: " + "\n    ".join(text.splitlines() or [""])  # every line break, \r and \u2028 too


if __name__ == "__main__":
    run_cli(main)
