"""Sweep preflight (alignpro/config/preflight.py): a real ``--multirun`` with a bad job is refused before any job
starts."""

from __future__ import annotations

from pathlib import Path

from tests import cli
from tests.conftest import ROOT


def multirun(sweep_dir, *overrides, experiment=("experiment=smoke",)):
    return cli.run("alignpro.train", "--multirun", *experiment, "logger=none", *overrides,
                   f"hydra.sweep.dir={sweep_dir}", timeout=300)


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


def test_a_good_sweep_passes_preflight_and_runs_each_distinct_job_once(tmp_path):
    """Arms that train nothing do not read λ: 4 points, 2 jobs; the report reads the other 2 from grid.json."""
    from alignpro.report.runs import collect

    sweep = tmp_path / "sweep"
    proc = multirun(sweep, "method=no_finetune,base_prompter", "lam=0.1,0.3", "eval.n_prompts=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in sweep.iterdir() if (p / "metrics.json").exists()) == ["0", "1"]
    assert proc.stdout.count("run dir: ") == 2
    jobs, missing = collect(sweep)
    assert missing == []
    seen = sorted((j["config"]["method.name"], j["config"]["lam"], Path(j["dir"]).name) for j in jobs)
    assert seen == [("base_prompter", 0.1, "1"), ("base_prompter", 0.3, "1"),
                    ("no_finetune", 0.1, "0"), ("no_finetune", 0.3, "0")]
    # the comparison report fills each λ's cell with both arms
    from alignpro.report.comparison import comparison_cells

    rows = comparison_cells(jobs, missing, n_resamples=50)
    assert sorted(r["cell"]["lam"] for r in rows) == [0.1, 0.3]
    assert all(set(r["arms"]) == {"no_finetune", "base_prompter"} for r in rows)


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


def grid_points_of(*overrides, params=None):
    """The sweep's points as the preflight sees them; ``params`` = ``hydra.sweeper.params`` (the sweep's values)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from alignpro.config.preflight import grid_points

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
        if params:
            with open_dict(cfg):
                cfg.hydra.sweeper.params = params
        return grid_points(cfg)


def test_the_paper_grid_runs_each_distinct_job_once():
    """48 points, 36 jobs: no fine-tuning and the oracle never read the prompter, so each (frozen, dataset) pair runs
    them once; the other prompter's points reuse that job, with their own config for the report."""
    points = grid_points_of("experiment=paper/grid")
    assert len(points) == 48
    jobs = sorted({p.job for p in points})
    assert jobs == list(range(36)) and sum(p.runs for p in points) == 36
    reused = [p for p in points if not p.runs]
    assert len(reused) == 12
    for p in reused:
        ov = dict(o.split("=", 1) for o in p.overrides)
        assert ov["method"] in ("no_finetune", "rlhf") and ov["prompter"] == "qwen25_1_5b"
        ran = next(q for q in points if q.runs and q.job == p.job)
        ran_ov = dict(o.split("=", 1) for o in ran.overrides)
        assert {k: v for k, v in ran_ov.items() if k != "prompter"} == {k: v for k, v in ov.items() if k != "prompter"}
        assert ran_ov["prompter"] == "phi35_mini"
        # what the reused point's config changes: the prompter's keys only (its job's resolved values stay)
        assert p.differs["prompter.name"] == "qwen25_1_5b" and p.differs["prompter.lora"] is None
        assert p.drops == [f"prompter.lora.{k}" for k in ("alpha", "dropout", "r", "target_modules")]
        assert {k.split(".")[0] for k in p.differs} == {"prompter"}
    # the arms that read the prompter run for each one
    assert all(p.runs for p in points if "method=alignpro" in p.overrides or "method=base_prompter" in p.overrides)


def test_points_that_differ_in_what_their_arm_reads_are_separate_jobs():
    points = grid_points_of("experiment=smoke", params={"method": "no_finetune,alignpro", "lam": "0.1,0.3",
                                                        "seed": "0,1"})
    runs = {tuple(sorted(p.overrides)): p.runs for p in points}
    assert len(points) == 8 and sum(runs.values()) == 6  # no_finetune ignores λ; seeds always differ
    assert not runs[("experiment=smoke", "lam=0.3", "method=no_finetune", "seed=0")]
    assert runs[("experiment=smoke", "lam=0.3", "method=alignpro", "seed=0")]
    # the fixed instruction reads the menu but not the prompter: a menu is a job of its own, a prompter is not
    points = grid_points_of("experiment=context", params={"method": "fixed_instruction",
                                                          "sft.instructions": "[Be brief.],[Be short.]",
                                                          "prompter": "smollm2_135m,tiny"})
    assert [p.runs for p in points] == [True, False, True, False]


def test_a_misspelt_experiment_in_a_sweep_is_refused_before_any_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = multirun(sweep, experiment=("experiment=smoke,smok",))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "alignpro: sweep preflight: 1 of 2 jobs are invalid; no job was started"
    assert lines[1].startswith("  job 1 (experiment=smok") and "did you mean smoke?" in lines[1]
    assert not sweep.exists()
