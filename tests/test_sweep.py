"""Sweep preflight (alignpro/sweep.py): a real ``--multirun`` with a bad job is refused before any job starts."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def multirun(sweep_dir, *overrides, experiment=("experiment=smoke",)):
    cmd = [sys.executable, "-m", "alignpro.train", "--multirun", *experiment, "logger=none", *overrides,
           f"hydra.sweep.dir={sweep_dir}"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_a_sweep_with_one_bad_job_names_it_and_runs_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    proc = multirun(sweep, "lam=0.1,-1,0.3")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "alignpro: sweep preflight: 1 of 3 jobs are invalid; no job was started"
    assert lines[1].startswith("  job 1 (") and "lam=-1" in lines[1] and "must be a finite number > 0" in lines[1]
    assert "Traceback" not in proc.stderr
    assert not sweep.exists()  # no job dir, so no model, checkpoint or metrics anywhere


def test_preflight_lists_every_bad_job_of_a_product_sweep_with_its_number(tmp_path):
    """Jobs are numbered as Hydra numbers them (the run dirs' names): the product of the sweep values, in order."""
    proc = multirun(tmp_path / "sweep", "trainer.max_steps=0,1", "method=alignpro,nope")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("alignpro: sweep preflight: 3 of 4 jobs are invalid")
    assert [line.split(" (")[0].strip() for line in lines[1:]] == ["job 0", "job 1", "job 3"]
    assert "trainer.max_steps=0" in lines[1] and "must be an integer > 0" in lines[1]
    assert "method=nope" in lines[2] and "alignpro" in lines[2]  # an unknown option: the valid ones are listed
    assert "method=nope" in lines[3] and "trainer.max_steps=1" in lines[3]


def test_a_good_sweep_passes_preflight_and_runs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = multirun(sweep, "method=no_finetune,base_prompter", "eval.n_prompts=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in sweep.iterdir() if (p / "metrics.json").exists()) == ["0", "1"]


def test_an_optuna_search_with_a_bad_fixed_value_is_refused_before_its_first_trial(tmp_path):
    """Optuna picks its jobs as it goes: the values it does not search are checked up front."""
    sweep = tmp_path / "sweep"
    proc = multirun(sweep, "hydra.sweeper.n_trials=2", "eval.n_prompts=0",
                    experiment=("experiment=search/lam", "+experiment@_global_=smoke"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "alignpro: sweep preflight: 1 of 1 jobs are invalid; no job was started"
    assert "eval.n_prompts=0" in lines[1] and "must be an integer > 0" in lines[1]
    assert not sweep.exists()
