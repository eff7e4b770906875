import pytest

from alignpro.methods.base import Arm
from alignpro.models.frozen import build_frozen
from alignpro.models.prompter import load_prompter
from alignpro.report.evaluate import eval_samplings, evaluate
from tests.conftest import compose


def test_eval_samplings_default_to_the_papers_d8():
    cfg = compose()
    answer, rewrite = eval_samplings(cfg.eval, 256, 128)
    assert (answer.temperature, answer.top_p, answer.top_k, answer.max_new_tokens) == (1.5, 0.6, 20, 256)
    assert (rewrite.temperature, rewrite.top_p, rewrite.top_k, rewrite.max_new_tokens) == (1.5, 0.6, 20, 128)
    cfg = compose("+eval.rewrite_sampling={temperature: 0.7, top_p: 1.0, top_k: 0}", "eval.max_new_tokens=9")
    answer, rewrite = eval_samplings(cfg.eval, 256, 128)
    assert answer.max_new_tokens == 9 and rewrite.temperature == 0.7


def test_evaluate_pools_samples_and_scores_against_x(tiny_reward):
    cfg = compose("experiment=smoke")
    answer, rewrite = eval_samplings(cfg.eval, 4, 4)
    arm = Arm("base_prompter", load_prompter(cfg.prompter), build_frozen(cfg.frozen))
    summary, rows = evaluate(arm, ["p1", "p2", "p3"], tiny_reward, answer, rewrite, samples_per_prompt=2,
                             n_resamples=100)
    assert summary["n"] == 6 and summary["n_prompts"] == 3 and len(rows) == 6
    assert [s.x for s in rows] == ["p1", "p1", "p2", "p2", "p3", "p3"]
    assert all(s.x_prime for s in rows)  # a prompter arm: every answer is to a rewrite
    assert [s.r for s in rows] == tiny_reward.score([s.x for s in rows], [s.y for s in rows])
    assert summary["reward_mean"] == pytest.approx(sum(s.r for s in rows) / 6)


def test_answer_shift_estimates_theorem_6_1_second_term(tiny_reward):
    cfg = compose("experiment=smoke")
    answer, rewrite = eval_samplings(cfg.eval, 4, 4)
    arm = Arm("base_prompter", load_prompter(cfg.prompter), build_frozen(cfg.frozen))
    summary, rows = evaluate(arm, ["p1", "p2", "p3"], tiny_reward, answer, rewrite, n_resamples=50, shift=True)
    direct = [s.r_direct for s in rows]
    assert summary["answer_shift_reward"] == pytest.approx(sum(direct) / 3 - summary["reward_mean"])
    assert 0 <= summary["answer_shift_embedding"] <= 2
    assert all(s.y_direct is not None for s in rows)
    assert [s.r_direct for s in rows] == tiny_reward.score([s.x for s in rows], [s.y_direct for s in rows])
    no_prompter = Arm("no_finetune", None, arm.responder)
    summary, rows = evaluate(no_prompter, ["p1", "p2"], tiny_reward, answer, rewrite, n_resamples=50, shift=True)
    assert "answer_shift_reward" not in summary and "y_direct" not in rows[0].row()
    assert all(s.x_prime is None for s in rows)  # π_F answered x itself


def test_heldout_prompts_are_the_first_n_or_a_seeded_draw_independent_of_the_run_seed():
    from alignpro.report.evaluate import heldout_prompts

    heldout = [{"prompt": f"p{i}"} for i in range(50)]
    first = compose("eval.n_prompts=5").eval
    assert heldout_prompts(heldout, first) == ["p0", "p1", "p2", "p3", "p4"]
    drawn = compose("eval.n_prompts=5", "eval.prompt_sample=seeded", "seed=3").eval
    picked = heldout_prompts(heldout, drawn)
    assert len(set(picked)) == 5 and picked != ["p0", "p1", "p2", "p3", "p4"]
    assert heldout_prompts(heldout, compose("eval.n_prompts=5", "eval.prompt_sample=seeded", "seed=9").eval) == picked
    other = compose("eval.n_prompts=5", "eval.prompt_sample=seeded", "eval.sample_seed=1").eval
    assert heldout_prompts(heldout, other) != picked
    assert compose("experiment=paper/phi35_mini_qwen25_7b_orca").eval.prompt_sample == "seeded"
    everything = compose("eval.n_prompts=80", "eval.prompt_sample=seeded").eval
    assert sorted(heldout_prompts(heldout, everything)) == sorted(r["prompt"] for r in heldout)


# -- python -m alignpro.evaluate: a trained prompter outside its run ---------------------------------------------------

def evaluate_cli(source, tmp_path, *overrides: str, sweep: bool = False):
    from tests import cli

    where = f"hydra.sweep.dir={tmp_path / 'sweep'}" if sweep else f"hydra.run.dir={tmp_path / 'run'}"
    proc = cli.run("alignpro.evaluate", str(source), "logger=none", where, *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_evaluate_in_the_training_runs_own_world_gives_its_held_out_result_again(arms_sweep, tmp_path):
    import json

    import yaml

    from tests.test_rewrite import job

    run = job(arms_sweep, "alignpro")
    evaluate_cli(run, tmp_path)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    before = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == "trained" and metrics["from_run"] == str(run)
    assert metrics["trained_on"] == {"dataset": "embedded", "frozen": "tiny", "reward": "tiny"}
    assert metrics["reward_mean"] == before["reward_mean"] and metrics["n"] == before["n"]  # same prompts, same draws
    cfg, trained = (yaml.safe_load((d / "config.yaml").read_text()) for d in (tmp_path / "run", run))
    assert cfg["prompter"] == trained["prompter"] and cfg["method"]["from_run"] == str(run)
    assert all(cfg[g] == trained[g] for g in ("frozen", "dataset", "eval", "generation"))
    assert cfg["reward"] == {**trained["reward"], "fit_dataset": trained["dataset"]}  # the world's reward, named


def test_evaluate_takes_other_prompts_and_keys_and_pairs_against_no_fine_tuning(arms_sweep, tmp_path):
    import json

    import yaml

    from tests.test_rewrite import job

    prompts = tmp_path / "prompts.jsonl"  # prompts alone: no answer columns, no flag to set
    prompts.write_text("".join(json.dumps({"prompt": f"Name a use for a {t}."}) + "\n"
                               for t in ("rope", "brick", "kettle", "ladder", "candle", "mirror", "spoon", "drum",
                                         "coin", "sponge")))
    folder = job(arms_sweep, "alignpro") / "prompter"  # the prompter folder alone is enough
    evaluate_cli(folder, tmp_path, "--multirun", "method=trained,no_finetune", "dataset=jsonl",
                 f"dataset.path={prompts}", "dataset.heldout=5", "eval.n_prompts=5", "frozen.max_new_tokens=6",
                 sweep=True)
    jobs = {yaml.safe_load((d / "config.yaml").read_text())["method"]["name"]: d
            for d in (tmp_path / "sweep").iterdir() if (d / "config.yaml").is_file()}
    assert set(jobs) == {"trained", "no_finetune"}
    cfg = yaml.safe_load((jobs["trained"] / "config.yaml").read_text())
    assert cfg["frozen"]["name"] == "tiny" and cfg["frozen"]["max_new_tokens"] == 6  # the run's frozen, one key moved
    assert cfg["dataset"]["path"] == str(prompts) and cfg["dataset"]["chosen_field"] == "chosen"
    # the prompts have no pairs: the world's reward is fitted on the training run's dataset, as it was there
    assert cfg["reward"]["fit_dataset"]["name"] == "embedded"
    trained_reward = json.loads((job(arms_sweep, "alignpro") / "metrics.json").read_text())["reward_model"]
    assert json.loads((jobs["trained"] / "metrics.json").read_text())["reward_model"] == trained_reward
    xs = [{json.loads(line)["x"] for line in (jobs[m] / "eval_samples.jsonl").read_text().splitlines()}
          for m in ("trained", "no_finetune")]
    assert xs[0] == xs[1] and len(xs[0]) == 5 and xs[0] <= {json.loads(p)["prompt"] for p in
                                                          prompts.read_text().splitlines()}
    from alignpro.report.compare import compare

    res = compare(tmp_path / "sweep", wandb_log=False)
    assert res["pairs"]["trained - no_finetune"]["n_pairs"] == 5


def test_evaluate_tells_the_prompter_from_hydras_flags_and_their_values(arms_sweep):
    from tests import cli
    from tests.test_rewrite import job

    run = job(arms_sweep, "alignpro")
    proc = cli.run("alignpro.evaluate", "--cfg", "job", str(run), "eval.n_prompts=3")  # "job" is --cfg's value
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"from_run: {run}" in proc.stdout and "name: trained" in proc.stdout and "n_prompts: 3" in proc.stdout
    proc = cli.run("alignpro.evaluate", str(run), str(run))
    assert proc.returncode == 2 and "give one trained prompter" in proc.stderr and "got 2" in proc.stderr
