"""Paired comparison of arms (alignpro/report/compare.py): hand-computed statistics, pairing by prompt and seed, and the
comparison written from real runs of a real multirun with the Hydra callback."""

import json

import pytest

from alignpro.report.compare import compare, comparison, paired, sentence
from alignpro.report.runs import load_runs
from alignpro.report.statistics import paired_difference
from alignpro.run.errors import BadInput
from tests import cli


def test_paired_difference_on_a_hand_computed_case():
    a, b = [3.0, 5.0, 7.0, 9.0], [1.0, 4.0, 6.0, 5.0]  # differences 2, 1, 1, 4
    out = paired_difference(a, b, n_resamples=500)
    assert out["diff_mean"] == pytest.approx(2.0)
    assert out["n_pairs"] == 4 and out["share_a_better"] == 1.0
    assert 1.0 <= out["diff_ci_low"] <= 2.0 <= out["diff_ci_high"] <= 4.0
    with pytest.raises(ValueError, match="pairs"):
        paired_difference([1.0], [1.0, 2.0])


def test_pairing_removes_the_shared_prompt_difficulty():
    """Arm a is exactly 0.5 better on every prompt, but prompts differ by ±10: paired, the interval is the point
    0.5; had the pairing been lost (each side resampled on its own) it would be ±several units wide."""
    difficulty = [(-1) ** i * 10.0 + i for i in range(40)]
    a = [d + 0.5 for d in difficulty]
    out = paired_difference(a, difficulty, n_resamples=500)
    assert out["diff_ci_low"] == pytest.approx(0.5) and out["diff_ci_high"] == pytest.approx(0.5)
    shuffled = difficulty[1:] + difficulty[:1]  # the same values, pairing broken
    broken = paired_difference(a, shuffled, n_resamples=500)
    assert broken["diff_ci_high"] - broken["diff_ci_low"] > 5


def _runs(rewards_by_seed: dict[int, dict[str, float]]) -> dict[int, dict]:
    return {s: {"rewards": r} for s, r in rewards_by_seed.items()}


def test_paired_matches_prompts_and_seeds_not_positions():
    a = _runs({0: {"p": 2.0, "q": 5.0, "only_a": 100.0}, 1: {"p": 3.0}, 2: {"p": 50.0}})
    b = _runs({0: {"q": 4.0, "p": 1.0}, 1: {"p": 1.0}, 3: {"p": -50.0}})
    out = paired(a, b, n_resamples=200)
    # pairs: seed 0 p (1), seed 0 q (1), seed 1 p (2); prompt only_a and seeds 2/3 have no partner
    assert out["n_pairs"] == 3 and out["seeds"] == [0, 1]
    assert out["diff_mean"] == pytest.approx(4 / 3)
    assert paired(a, _runs({5: {"p": 0.0}})) is None


def test_sentence_says_what_the_interval_says():
    p = {"diff_mean": 1.2, "diff_ci_low": 0.4, "diff_ci_high": 2.0, "n_pairs": 72}
    assert "beat" in sentence({"alignpro - no_finetune": p}) and "excludes 0" in sentence({"alignpro - no_finetune": p})
    p.update(diff_ci_low=-0.1)
    assert "cannot tell" in sentence({"alignpro - no_finetune": p})
    p.update(diff_mean=-1.0, diff_ci_low=-2.0, diff_ci_high=-0.5)
    assert "did not beat" in sentence({"alignpro - no_finetune": p}) and "worse" in sentence(
        {"alignpro - no_finetune": p})
    assert "nothing to compare" in sentence({})


def test_comparison_pools_per_arm_and_pairs_every_pair():
    runs = {arm: {0: {"rewards": {"x": v, "y": v + 1}, "all_rewards": [v, v + 1], "metrics": {}, "curve": []}}
            for arm, v in (("no_finetune", 0.0), ("base_prompter", 1.0), ("alignpro", 3.0))}
    res = comparison(runs, n_resamples=200)
    assert list(res["arms"]) == ["no_finetune", "base_prompter", "alignpro"]
    assert res["arms"]["alignpro"]["mean"] == pytest.approx(3.5)
    assert set(res["pairs"]) == {"alignpro - no_finetune", "alignpro - base_prompter", "base_prompter - no_finetune"}
    assert res["pairs"]["alignpro - no_finetune"]["diff_mean"] == pytest.approx(3.0)
    assert res["sentence"].startswith("Align-Pro beat")


@pytest.fixture(scope="module")
def demo_sweep(tmp_path_factory):
    """`experiment=demo` itself (its sweep of the arms, its Hydra callback), on tiny models: a real multirun."""
    sweep = tmp_path_factory.mktemp("demo") / "sweep"
    proc = cli.run("alignpro.train", "--multirun", "experiment=demo", "prompter=tiny", "frozen=tiny", "reward=tiny",
                   "trainer.max_steps=2", "eval.n_prompts=6", "sft.n_examples=8", "prompter.lora={r: 4}",
                   "eval.bootstrap_resamples=200", "logger.mode=offline", f"hydra.sweep.dir={sweep}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep, proc.stdout


def test_demo_sweep_ends_with_the_table_the_sentence_and_comparison_json(demo_sweep):
    sweep, stdout = demo_sweep
    res = json.loads((sweep / "comparison.json").read_text())
    assert set(res["arms"]) == {"no_finetune", "base_prompter", "alignpro"}
    assert all(a["n"] == 6 for a in res["arms"].values())
    pair = res["pairs"]["alignpro - no_finetune"]
    assert pair["n_pairs"] == 6 and pair["diff_ci_low"] <= pair["diff_mean"] <= pair["diff_ci_high"]
    # the numbers are the runs' own: recompute the paired mean from the two eval_samples.jsonl files
    rows = {arm: {r["x"]: r["r"] for r in map(json.loads, (sweep / d / "eval_samples.jsonl").read_text().splitlines())}
            for arm, by_seed in res["runs"].items() for d in [next(iter(by_seed.values()))]}
    diffs = [rows["alignpro"][x] - rows["no_finetune"][x] for x in rows["alignpro"]]
    assert pair["diff_mean"] == pytest.approx(sum(diffs) / len(diffs))
    assert res["sentence"] in stdout and "| paired difference |" in stdout
    assert (sweep / "comparison.png").stat().st_size > 10_000 and (sweep / "comparison.md").exists()
    # the share of usable rewrites (x + an instruction of the run's menu) of each prompter arm, counted here
    from alignpro.run.directory import RunDir

    def norm(text: str) -> str:
        return " ".join(text.split()).lower()

    for arm in ("base_prompter", "alignpro"):
        run = RunDir(res["runs"][arm]["0"])
        menu = {norm(i) for i in run.read_config()["sft"]["instructions"]}
        usable = [norm(s.x_prime).startswith(norm(s.x)) and norm(s.x_prime)[len(norm(s.x)):].strip() in menu
                  for s in run.read_eval_samples()]
        assert len(usable) == 6 and res["arms"][arm]["menu_rate"] == pytest.approx(sum(usable) / 6), arm
    assert "menu_rate" not in res["arms"]["no_finetune"]  # no prompter, no rewrites to count


def test_demo_comparison_reaches_wandb(demo_sweep):
    from tests.wandb_offline import read_run

    sweep, _ = demo_sweep
    run = read_run(sweep / "wandb")
    assert run["job_type"] == "comparison" and run["group"] == f"sweep-{sweep.name}"
    logged = {k for row in run["history"] for k in row}  # tables and images are logged as nested keys
    for key in ("comparison/arms", "comparison/pairs", "comparison/plot"):
        assert any(k.startswith(key) for k in logged), (key, sorted(logged))


def test_compare_cli_rewrites_the_same_numbers(demo_sweep, tmp_path):
    """`python -m alignpro.report.compare <sweep> --out <dir>` on a finished sweep: the callback's numbers again, the
    table on stdout; a dir without runs is one line, exit 2."""
    sweep, _ = demo_sweep
    before = json.loads((sweep / "comparison.json").read_text())
    proc = cli.run("alignpro.report.compare", sweep, "--out", tmp_path / "again", "--no-wandb", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((tmp_path / "again" / "comparison.json").read_text())
    assert again["pairs"] == before["pairs"] and again["arms"] == before["arms"] and again["runs"] == before["runs"]
    assert before["sentence"] in proc.stdout and "| paired difference |" in proc.stdout
    assert (tmp_path / "again" / "comparison.png").stat().st_size > 10_000
    assert compare(sweep, tmp_path / "in-process", wandb_log=False)["pairs"] == before["pairs"]
    proc = cli.run("alignpro.report.compare", tmp_path / "nothing", timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("alignpro: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_two_runs_of_one_arm_and_seed_are_refused(demo_sweep, tmp_path):
    import shutil

    sweep, _ = demo_sweep
    runs = load_runs(sweep)
    src = runs["no_finetune"][0]["dir"]
    for name in ("a", "b"):
        shutil.copytree(src, tmp_path / name)
    with pytest.raises(BadInput, match="two runs of arm 'no_finetune' with seed 0"):
        load_runs(tmp_path)


def test_prompts_with_kinds_get_the_arm_by_kind_table_and_what_each_arm_wrote(tmp_path):
    """dataset=context: per arm and kind, the mean reward and the texts the arm's rewrites added to x, counted."""
    from alignpro.report.compare import markdown, plot
    from alignpro.run.directory import Sample

    def run(rows):  # (x, x', r, kind) per held-out answer
        samples = [Sample(x, xp, "y", r, kind=k) for x, xp, r, k in rows]
        return {0: {"rewards": {s.x: s.r for s in samples}, "all_rewards": [s.r for s in samples], "metrics": {},
                    "curve": [], "samples": samples}}

    runs = {"no_finetune": run([("a?", None, 1.0, "lookup"), ("b?", None, 3.0, "lookup"), ("c?", None, 0.0, "why")]),
            "fixed_instruction": run([("a?", "a? Be brief.", 2.0, "lookup"), ("b?", "b? Be brief.", 4.0, "lookup"),
                                      ("c?", "c? Be brief.", -1.0, "why")]),
            "alignpro": run([("a?", "a? Be brief.", 2.0, "lookup"), ("b?", "b? Use a list.", 2.0, "lookup"),
                             ("c?", "c? Explain why.", 5.0, "why")])}
    res = comparison(runs, n_resamples=200)
    assert res["kinds"]["no_finetune"] == {"lookup": {"mean": 2.0, "n": 2, "written": {"(x itself)": 2}},
                                           "why": {"mean": 0.0, "n": 1, "written": {"(x itself)": 1}}}
    assert res["kinds"]["alignpro"]["lookup"]["written"] == {"Be brief.": 1, "Use a list.": 1}
    assert res["kinds"]["alignpro"]["why"] == {"mean": 5.0, "n": 1, "written": {"Explain why.": 1}}
    assert res["kinds"]["fixed_instruction"]["why"]["mean"] == -1.0
    assert "alignpro - fixed_instruction" in res["pairs"]
    text = markdown(res, "here")
    assert "| arm | lookup | why |" in text
    assert "| Align-Pro (trained ρ) | 2.00 (n=2) | 5.00 (n=1) |" in text
    assert '| Align-Pro (trained ρ) | lookup | "Be brief." 1; "Use a list." 1 |' in text
    assert "| No fine-tuning" not in text.split("what it added to x")[1]  # an arm that answers x has no rewrites
    import matplotlib.image

    image = matplotlib.image.imread(plot(res, runs, tmp_path))
    assert image.shape[1] > 1.3 * 11 * 120  # three panels: the arm-by-kind heatmap beside the two usual ones
    plain = comparison({arm: {0: {k: v for k, v in r[0].items() if k != "samples"}} for arm, r in runs.items()}, 200)
    assert "kinds" not in plain


def test_the_training_panel_shows_what_align_pro_wrote_per_kind_as_it_learned(tmp_path):
    """Training samples with kinds: per kind and step, the texts Align-Pro's rewrites added to x, counted over seeds;
    the report gives their shares in the first and last quarter of the steps and a second row of panels, one per
    kind. A prompt's kind is read from the packaged dataset where the samples do not carry it."""
    import matplotlib.image

    from alignpro.report.compare import markdown, plot, pooled_shares, training_by_kind
    from alignpro.run.directory import RunDir, Sample

    def run_dir(name, rows, config=None):  # rows: (step, x, instruction, kind)
        files = RunDir(tmp_path / name)
        files.root.mkdir()
        files.sample_log().write([Sample(x, f"{x} {i}", "y", 0.0, step, kind=k) for step, x, i, k in rows])
        (files.root / "config.yaml").write_text(config or "dataset: {source: file}\n")
        held = [Sample("q?", None, "y", 0.0, kind="lookup")]  # held-out samples with kinds: the world has kinds
        return {"dir": str(files.root), "curve": [], "samples": held}

    early = [(0, "a?", "Be brief.", "lookup"), (0, "b?", "Be brief.", "howto"), (1, "b?", "Be brief.", "howto")]
    late = [(2, "a?", "Be brief.", "lookup"), (2, "b?", "Use a list.", "howto"), (3, "b?", "Use a list.", "howto")]
    runs = {"alignpro": {0: run_dir("s0", early + late), 1: run_dir("s1", [(3, "a?", "Be brief.", "lookup")])}}
    by_kind = training_by_kind(runs)
    assert by_kind == {"lookup": {0: {"Be brief.": 1}, 2: {"Be brief.": 1}, 3: {"Be brief.": 1}},
                       "howto": {0: {"Be brief.": 1}, 1: {"Be brief.": 1}, 2: {"Use a list.": 1},
                                 3: {"Use a list.": 1}}}
    steps, lines = pooled_shares(by_kind["howto"], window=2)
    assert steps == [1, 2, 3, 4] and lines == {"Be brief.": [1.0, 1.0, 0.5, 0.0], "Use a list.": [0.0, 0.0, 0.5, 1.0]}
    res = {"arms": {}, "pairs": {}, "sentence": ".", "training_by_kind": by_kind}
    text = markdown(res, "here")
    assert '| howto | "Be brief." 100% | "Use a list." 100% |' in text
    oracle = {0: {"curve": [{"step": 1, "reward": 0.5, "kl_seq": 0.0}, {"step": 2, "reward": 0.7, "kl_seq": 0.1}]}}
    image = matplotlib.image.imread(plot(dict(res, arms={"alignpro": {"mean": 0, "ci_low": 0, "ci_high": 0}}),
                                         {**runs, "rlhf": oracle}, tmp_path))  # the oracle's curve beside Align-Pro's
    assert image.shape[0] > 1.5 * 4 * 120  # a second row of panels

    from omegaconf import OmegaConf

    from alignpro.data.preferences import load_splits
    from tests.conftest import compose

    dataset = compose("dataset=context").dataset
    record = load_splits(dataset).train[0]
    bare = run_dir("bare", [(0, record["prompt"], "Be brief.", None)], OmegaConf.to_yaml({"dataset": dataset}))
    assert training_by_kind({"alignpro": {0: bare}}) == {record["kind"]: {0: {"Be brief.": 1}}}
    assert training_by_kind({"alignpro": {0: {**bare, "samples": []}}}) == {}  # no held-out kinds: nothing is read


def test_each_kinds_best_comes_from_the_train_menu_scores_and_each_prompter_arm_is_matched_against_it(tmp_path):
    """The kinds' best instructions are read from fixed_instruction's selection.json (per-kind train rewards,
    averaged over seeds); per prompter arm, the share of held-out rewrites that add their kind's best."""
    from alignpro.report.compare import kind_match, kinds_best, markdown

    def fixed(seed, scores):  # scores: {instruction: {kind: mean train reward}}
        d = tmp_path / f"fixed{seed}"
        d.mkdir()
        menu = [{"instruction": i, "reward_mean": 0.0, "by_kind": k} for i, k in scores.items()]
        (d / "selection.json").write_text(json.dumps({"instruction": "Be brief.", "menu": menu}))
        return {"dir": str(d)}

    runs = {"fixed_instruction": {0: fixed(0, {"Be brief.": {"lookup": 2.0, "howto": 1.0},
                                               "Use a list.": {"lookup": 1.0, "howto": 0.5}}),
                                  1: fixed(1, {"Be brief.": {"lookup": 2.0, "howto": 0.0},
                                               "Use a list.": {"lookup": 1.0, "howto": 2.0}})}}
    best = kinds_best(runs)
    assert best == {"lookup": "Be brief.", "howto": "Use a list."}  # howto: 0.5 vs 1.25 over the two seeds
    kinds = {"no_finetune": {"lookup": {"mean": 0, "n": 2, "written": {"(x itself)": 2}},
                             "howto": {"mean": 0, "n": 2, "written": {"(x itself)": 2}}},
             "fixed_instruction": {"lookup": {"mean": 0, "n": 2, "written": {"Be brief.": 2}},
                                   "howto": {"mean": 0, "n": 2, "written": {"Be brief.": 2}}},
             "alignpro": {"lookup": {"mean": 0, "n": 2, "written": {"Be brief.": 1, "Use a list.": 1}},
                          "howto": {"mean": 0, "n": 2, "written": {"Use a list.": 2}}}}
    match = kind_match(kinds, best)
    assert match == {"fixed_instruction": {"lookup": 1.0, "howto": 0.0, "all": 0.5},
                     "alignpro": {"lookup": 0.5, "howto": 1.0, "all": 0.75}}
    text = markdown({"arms": {}, "pairs": {}, "sentence": ".", "kind_best": {"best": best, "match": match}}, "here")
    assert 'lookup "Be brief."; howto "Use a list."' in text
    assert "| Align-Pro (trained ρ) | 50% | 100% | 75% |" in text
    assert kinds_best({"fixed_instruction": {0: {"dir": str(tmp_path / "nothing")}}}) == {}
