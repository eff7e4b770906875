"""``python -m alignpro.tools.plan``: a plan for the command line's overrides, printed (and with ``--json``,
written)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import alignpro.tools.plan
from alignpro.run.errors import ArgumentParser, BadInput, run_cli
from alignpro.tools.plan.jobs import plan
from alignpro.tools.plan.memory import PROMPT_TOKENS
from alignpro.tools.plan.report import as_json, render


def main(argv: list[str] | None = None) -> dict:
    ap = ArgumentParser(prog="python -m alignpro.tools.plan", description=alignpro.tools.plan.__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m alignpro.train")
    ap.add_argument("--multirun", "-m", action="store_true", help="accepted and ignored: a plan launches nothing")
    ap.add_argument("--json", metavar="PATH", help="also write the plan as JSON")
    ap.add_argument("--prompt-tokens", type=int, default=PROMPT_TOKENS,
                    help=f"length of a user prompt x in tokens (default {PROMPT_TOKENS})")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if args.prompt_tokens < 1:
        raise BadInput(f"--prompt-tokens {args.prompt_tokens} is invalid: must be an integer > 0")
    result = plan(args.overrides, args.multirun, args.prompt_tokens)
    print(render(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(result), indent=1), encoding="utf-8")
    return result


def cli() -> None:
    """``python -m alignpro.tools.plan``: a failure is one line and an exit code (alignpro/run/errors.py)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
