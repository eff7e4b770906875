"""``python -m alignpro.rewrite``: a run's trained prompter, used outside the run, with the run's settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests import cli


def job(sweep: Path, method: str, seed: int = 0) -> Path:
    """The folder of one job of the shared four-arm sweep (tests/conftest.py arms_sweep)."""
    for d in sorted(p for p in sweep.iterdir() if (p / "config.yaml").is_file()):
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        if cfg["method"]["name"] == method and cfg["seed"] == seed:
            return d
    raise AssertionError(f"no {method} job of seed {seed} in {sweep}")


def printed(stdout: str, tag: str) -> list[str]:
    """The texts printed after ``tag:``, each with its indented further lines."""
    texts: list[str] = []
    current = None
    for line in stdout.splitlines():
        if line.startswith("    ") and current is not None:
            texts[-1] += "\n" + line[4:]
        elif line.startswith(f"{tag}: "):
            texts.append(line.split(": ", 1)[1])
            current = tag
        else:
            current = None
    return texts


def test_rewrite_prints_what_the_runs_own_prompter_writes_with_the_runs_settings(arms_sweep, tmp_path):
    import torch
    from omegaconf import OmegaConf
    from transformers import set_seed

    from alignpro.config.rules import typed
    from alignpro.config.schema import Config
    from alignpro.models.prompter import load_prompter
    from alignpro.report.evaluate import eval_samplings

    run = job(arms_sweep, "alignpro")
    prompts = ["What is a river?", "Name a colour."]
    more = ([], [], ["--seed", "1", "--answer"])
    runs = [cli.run("alignpro.rewrite", str(run), *prompts, "--n", "2", *m) for m in more]
    assert all(p.returncode == 0 for p in runs), runs[0].stderr[-2000:]
    assert printed(runs[0].stdout, "x") == prompts
    first, again, other = (printed(p.stdout, "x′") for p in runs)
    assert first == again and first != other  # seeded by the run's seed; another seed draws others
    # --answer: the frozen model's answer after each rewrite
    tags = [line.split(":")[0] for line in runs[2].stdout.splitlines() if not line.startswith("    ")]
    assert tags == (["x"] + ["x′", "y"] * 2) * 2  # a multi-line text's further lines are indented
    # the same draws as the trained prompter loaded in-process, with the run's meta-prompt, system turn, token limit
    # and evaluation sampling
    cfg = typed(OmegaConf.load(run / "config.yaml"), Config)
    _, rewrite = eval_samplings(cfg.eval, cfg.frozen.max_new_tokens, cfg.prompter.max_new_tokens)
    xs = [p for p in prompts for _ in range(2)]
    set_seed(cfg.seed)
    prompter = load_prompter(cfg.prompter, path=str(run / "prompter"))
    assert prompter.rewrite(xs, rewrite) == first
    # other weights in a copy of the run's prompter/ folder: the command reads them (one smoke step barely moves the
    # tiny prompter, so ρ_ref itself would write the same)
    copy = shutil.copytree(run, tmp_path / "run")
    with torch.no_grad():
        for w in prompter.model.parameters():
            w.add_(torch.randn_like(w))
    prompter.model.save_pretrained(copy / "prompter")
    moved = cli.run("alignpro.rewrite", str(copy), *prompts, "--n", "2")
    assert moved.returncode == 0 and printed(moved.stdout, "x′") != first


def test_rewrite_refuses_a_job_without_a_prompter_and_a_base_that_is_gone(arms_sweep, tmp_path):
    proc = cli.run("alignpro.rewrite", str(job(arms_sweep, "no_finetune")), "a prompt")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "its method, no_finetune, trains no prompter" in proc.stderr
    run = shutil.copytree(job(arms_sweep, "alignpro"), tmp_path / "run")
    (run / "prompter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/gone/rho"}))
    proc = cli.run("alignpro.rewrite", str(run), "a prompt")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "the prompter's base model /gone/rho is gone" in proc.stderr and str(run / "config.yaml") in proc.stderr
