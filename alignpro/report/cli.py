"""``python -m alignpro.report``: a comparison report (Table 1, Figures 2–3) or an ablation report from finished runs.

    python -m alignpro.report outputs/multiruns/<date>/<time> --out reports/lam
    python -m alignpro.report --paper --out reports/paper       # the paper's own numbers alone
"""

from __future__ import annotations

from pathlib import Path

from alignpro import CONF_DIR
from alignpro.report.ablation import ablation_report
from alignpro.report.comparison import comparison_report
from alignpro.report.runs import collect
from alignpro.run.errors import ArgumentParser, BadInput, run_cli


def is_comparison(jobs: list[dict]) -> bool:
    """A sweep over the arms (``method=...``) is the paper's comparison; anything else is an ablation."""
    return len({j["config"].get("method.name") for j in jobs}) > 1


def judge_config(name: str, overrides: list[str]):
    """``conf/judge/<name>.yaml`` with ``key=value`` overrides (the judge group; factory: alignpro.report.judge),
    validated before any judge model loads."""
    from omegaconf import OmegaConf

    from alignpro.config.validate import validate_judge

    options = sorted(p.stem for p in (Path(CONF_DIR) / "judge").glob("*.yaml"))
    if name not in options:
        raise BadInput(f"--judge {name} is unknown; valid: {', '.join(options)}")
    cfg = OmegaConf.load(Path(CONF_DIR) / "judge" / f"{name}.yaml")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise BadInput(f"--judge-set {' '.join(bad)} is invalid: it takes key=value pairs, e.g. --judge-set "
                       "model=gpt-4o base_url=http://localhost:8000/v1")
    cfg = validate_judge(OmegaConf.create({"judge": OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))}))
    if cfg.backend == "openai_api":  # the server answers and serves the model, before any run is read or judged
        from alignpro.models.api import ChatClient

        ChatClient.from_config(cfg).preflight("judge")
    return cfg


def cli() -> None:
    """``python -m alignpro.report``: a failure is one line and an exit code (alignpro/run/errors.py)."""
    run_cli(main)


def main(argv: list[str] | None = None) -> dict:
    ap = ArgumentParser(prog="python -m alignpro.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="?", help="a multirun dir (outputs/multiruns/<date>/<time>) or any dir of run dirs")
    ap.add_argument("--out", required=True, help="where report.md, the tables and the figures (PNG, PDF) go")
    ap.add_argument("--paper", action="store_true", help="render the paper's own Table 1 and Figures 2–3 alone")
    ap.add_argument("--kind", choices=("auto", "comparison", "ablation"), default="auto",
                    help="comparison = Table 1 + Figs 2–3 over the arms; ablation = grouped by the swept keys; "
                         "auto: comparison when the runs differ in method")
    ap.add_argument("--by", nargs="*", default=None, help="ablation factor keys (default: the keys the sweep varied)")
    ap.add_argument("--judge", default=None, help="judge Align-Pro vs no fine-tuning with conf/judge/<name>.yaml "
                                                  "(e.g. openai_api, hf); omitted = no judging")
    ap.add_argument("--judge-set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the judge config")
    ap.add_argument("--no-wandb", action="store_true", help="do not log the report to W&B")
    args = ap.parse_args(argv)
    if not args.paper and not args.runs:
        ap.error("give a runs dir, or --paper")
    if args.paper:
        res = comparison_report(None, args.out, paper_only=True, wandb_log=not args.no_wandb)
    else:
        jobs, _ = collect(args.runs)
        kind = args.kind if args.kind != "auto" else ("comparison" if is_comparison(jobs) else "ablation")
        if kind == "comparison":
            judge = judge_config(args.judge, args.judge_set) if args.judge else None
            res = comparison_report(args.runs, args.out, judge_cfg=judge, wandb_log=not args.no_wandb)
        else:
            if args.judge:  # refused, not ignored: an ablation has no pair of arms to judge
                raise BadInput(f"--judge {args.judge} judges Align-Pro against no fine-tuning, but '{args.runs}' "
                               "is an ablation (one arm); judge a multirun of method=alignpro,no_finetune")
            res = ablation_report(args.runs, args.out, args.by, wandb_log=not args.no_wandb)
    print(Path(res["report"]).read_text())
    print("figures:", ", ".join(res["figures"]))
    if res.get("wandb"):
        print("W&B:", res["wandb"])
    return res
