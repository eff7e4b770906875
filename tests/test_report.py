"""Reports from real run dirs: a real (tiny) λ-ablation multirun, then the report on it."""

import json
import subprocess
import sys

import pytest

from alignpro.report import ablation_report, factors, flatten
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def lam_sweep(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("ablation") / "lam"
    cmd = [sys.executable, "-m", "alignpro.train", "--multirun", "experiment=ablation/lam", "prompter=tiny",
           "frozen=tiny", "reward=tiny", "device=cpu", "logger=none", "trainer.max_steps=1",
           "trainer.prompts_per_step=2", "eval.n_prompts=4", "eval.bootstrap_resamples=100",
           f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def test_ablation_config_sweeps_lam_and_seed(lam_sweep):
    lams_seeds = sorted((json.loads((d / "metrics.json").read_text())["lam"],
                         json.loads((d / "metrics.json").read_text())["seed"]) for d in lam_sweep.iterdir()
                        if (d / "metrics.json").exists())
    assert lams_seeds == [(0.05, 0), (0.05, 1), (0.2, 0), (0.2, 1), (1.0, 0), (1.0, 1)]


def test_lam_report_groups_by_lam_pools_seeds_and_plots(lam_sweep, tmp_path):
    res = ablation_report(lam_sweep, tmp_path)
    assert res["by"] == ["lam"] and res["missing"] == []
    assert [r["lam"] for r in res["rows"]] == [0.05, 0.2, 1.0]
    for row in res["rows"]:
        assert row["seeds"] == [0, 1] and row["n"] == 8  # 4 prompts × 2 seeds, pooled
        assert row["ci_low"] <= row["reward_mean"] <= row["ci_high"]
        assert row["final_kl_seq"] is not None and row["answer_shift_reward"] is not None
    md = (tmp_path / "report.md").read_text()
    assert "| lam | seeds | reward_mean" in md
    for png in ("reward_vs_factor.png", "reward_vs_kl.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_failed_jobs_are_listed_as_missing(lam_sweep, tmp_path):
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(lam_sweep, copy)
    victim = sorted(p for p in copy.iterdir() if p.is_dir() and p.name.isdigit())[0]
    (victim / "metrics.json").unlink()
    res = ablation_report(copy, tmp_path / "out")
    assert res["missing"] == [str(victim)]
    assert sum(len(r["seeds"]) for r in res["rows"]) == 5
    assert str(victim) in (tmp_path / "out" / "report.md").read_text()


def test_factors_ignore_seed_and_unvaried_keys():
    jobs = [{"config": flatten({"lam": lam, "seed": s, "trainer": {"name": "rloo"}})}
            for lam in (0.1, 1) for s in (0, 1)]
    assert factors(jobs) == ["lam"]


def test_factors_collapse_keys_that_vary_together():
    jobs = [{"config": flatten({"prompter": {"meta_prompt_name": n, "meta_prompt": f"a long prompt text {n} [PROMPT]"},
                                "seed": s})} for n in ("paper", "none") for s in (0, 1)]
    assert factors(jobs) == ["prompter.meta_prompt_name"]


def test_report_cli_errors_clearly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alignpro.report", str(tmp_path / "nope"), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0 and "is not a directory of runs" in proc.stderr


@pytest.mark.parametrize("ablation,factor,levels", [
    ("meta_prompt", "prompter.meta_prompt_name", ["helpful", "none", "paper"]),
    ("reward_prompt", "reward.prompt", ["original", "rewritten"]),
    ("trainer", "trainer.name", ["grpo", "rloo"]),
    ("k", "trainer.num_generations", [2, 4]),
])
def test_every_ablation_sweep_runs_and_reports(ablation, factor, levels, tmp_path):
    """Each ablation config is a real sweep (tiny models here): it runs, and its report finds its factor."""
    sweep = tmp_path / ablation
    cmd = [sys.executable, "-m", "alignpro.train", "--multirun", f"experiment=ablation/{ablation}", "prompter=tiny",
           "frozen=tiny", "reward=tiny", "device=cpu", "logger=none", "trainer.max_steps=1",
           "trainer.prompts_per_step=2", "eval.n_prompts=3", "eval.bootstrap_resamples=50",
           "eval.answer_shift=false", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = ablation_report(sweep, tmp_path / "report")
    assert res["by"] == [factor] and res["missing"] == []
    assert [r[factor] for r in res["rows"]] == levels
    assert all(r["seeds"] == [0, 1] for r in res["rows"])
    assert (tmp_path / "report" / "reward_vs_factor.png").exists()
