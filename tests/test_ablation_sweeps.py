"""Ablation sweeps run as sweeps: `experiment=ablation/<name>` through `python -m alignpro.train --multirun` on tiny
models, then `python -m alignpro.report` on the sweep dir. (tests/test_report.py runs lam, meta_prompt, reward_prompt,
trainer and k this way; this file holds the ones on experiment=steer.)"""

import json

import pytest
import yaml

from tests import cli

LAMS, SEEDS = [0.02, 0.2, 2.0], [0, 1]


def test_lam_steer_sweeps_lam_and_seed_in_the_steerable_world_and_reports_the_reward_kl_frontier(tmp_path):
    """experiment=ablation/lam_steer: λ × seed on experiment=steer (appended instruction on ρ_sft with LoRA, the
    concise dataset), the whole sweep here with tiny models and 3 steps: one job per (λ, seed) with those values,
    and a report that pools the seeds of each λ and plots the reward–KL frontier."""
    sweep, out = tmp_path / "sweep", tmp_path / "report"
    proc = cli.run("alignpro.train", "--multirun", "experiment=ablation/lam_steer", "prompter=tiny", "frozen=tiny",
                   "reward=tiny", "device=cpu", "logger=none", "trainer.max_steps=3", "sft.n_examples=16",
                   "frozen.max_new_tokens=8", "eval.n_prompts=3", "eval.bootstrap_resamples=50",
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    # One job per (λ, seed) of the config's sweep, each with its own values, over experiment=steer; each finished.
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    configs = [yaml.safe_load((j / "config.yaml").read_text()) for j in jobs]
    assert sorted((c["lam"], c["seed"]) for c in configs) == [(lam, s) for lam in LAMS for s in SEEDS]
    final_kl = {}
    for job, cfg in zip(jobs, configs, strict=True):
        metrics = json.loads((job / "metrics.json").read_text())
        assert (metrics["lam"], metrics["seed"]) == (cfg["lam"], cfg["seed"])
        assert metrics["n"] == 3 and not (job / "error.txt").exists()
        assert cfg["method"]["name"] == "alignpro" and cfg["dataset"]["name"] == "concise"
        assert cfg["prompter"]["meta_prompt_name"] == "instruction" and cfg["prompter"]["lora"]["r"] == 16
        assert cfg["sft"]["enabled"] is True and cfg["trainer"]["max_steps"] == 3
        steps = [r for r in map(json.loads, (job / "train_log.jsonl").read_text().splitlines()) if "reward" in r]
        assert [r["step"] for r in steps] == [1, 2, 3]
        final_kl[cfg["lam"], cfg["seed"]] = steps[-1]["kl_seq"]
    # λ reached the trainer: from the same seed, the KL after two updates differs with it (the first update cannot
    # differ: the KL is 0 at step 1)
    for seed in SEEDS:
        assert len({final_kl[lam, seed] for lam in LAMS}) == len(LAMS), final_kl

    report = cli.run("alignpro.report", sweep, "--out", out, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = json.loads((out / "table.json").read_text())
    assert [r["lam"] for r in rows] == LAMS  # one row per λ: the seeds pooled, nothing else varied
    for row in rows:
        assert row["seeds"] == SEEDS and row["n"] == 3 * len(SEEDS)
        assert row["ci_low"] <= row["reward_mean"] <= row["ci_high"]
        # its point on the reward-KL frontier: the seeds' KL at the last step, pooled
        assert row["final_kl_seq"] == pytest.approx(sum(final_kl[row["lam"], s] for s in SEEDS) / len(SEEDS))
    md = (out / "report.md").read_text()
    assert md in report.stdout
    assert "| lam | seeds | reward_mean" in md and "Missing" not in md
    for png in ("reward_vs_factor.png", "reward_vs_kl.png"):
        assert (out / png).stat().st_size > 10_000
