"""The lever probe (alignpro/tools/lever.py): answers to x and to x + instruction, paired per train prompt."""

import json

import pytest

from alignpro.tools.lever import main, probe, table
from tests import cli
from tests.conftest import compose


def test_probe_pairs_each_instruction_with_x_on_train_prompts(tmp_path, lively_lm):
    """Every row answers the first n train prompts (x itself, or x + " " + instruction), scores each answer against x
    with the reward model, and compares an instruction's rewards with x's prompt by prompt."""
    from alignpro.data.preferences import load_splits
    from alignpro.models.reward import build_reward
    from alignpro.report.statistics import paired_difference

    # The frozen model is lively_lm: the tiny frozen model's answers hardly depend on the prompt (x and x + an
    # instruction get the same answer from the same random stream), which would make every paired difference 0.
    model, tok = lively_lm
    model.save_pretrained(tmp_path / "frozen")
    tok.save_pretrained(tmp_path / "frozen")
    cfg = compose("experiment=smoke", "dataset=concise", "frozen.source=hub", f"frozen.model_id={tmp_path / 'frozen'}")
    res = probe(cfg, ["Be brief.", "Use a list."], n=5)
    assert res["split"] == "train" and res["n_prompts"] == 5
    assert [r["instruction"] for r in res["rows"]] == [None, "Be brief.", "Use a list."]
    splits = load_splits(cfg.dataset)
    train_xs = [r["prompt"] for r in splits.train[:5]]
    heldout = {r["prompt"] for r in splits.heldout}
    assert not heldout & set(train_xs)
    reward = build_reward(cfg.reward, splits.train, splits.heldout, "cpu")  # as the probe builds it (cached head)
    base, *variants = res["rows"]
    r_of_x = {s["x"]: s["r"] for s in base["samples"]}
    for row in res["rows"]:
        samples = row["samples"]
        assert [s["x"] for s in samples] == train_xs  # the first n train prompts, in order; never held-out ones
        suffix = "" if row["instruction"] is None else " " + row["instruction"]
        assert [s["x_prime"] for s in samples] == [s["x"] + suffix for s in samples]
        assert row["example"] == {"x_prime": samples[0]["x_prime"], "y": samples[0]["y"]}
        # r is the reward model's score of (x, y), the answer judged against x, not x'
        rescored = reward.score([s["x"] for s in samples], [s["y"] for s in samples])
        assert [s["r"] for s in samples] == pytest.approx(rescored, abs=1e-5)
    for row in variants:
        mine = [s["r"] for s in row["samples"]]
        paired = [r_of_x[s["x"]] for s in row["samples"]]  # x's reward for the same prompt, aligned by x
        assert mine != paired  # the instruction changed some answers: the pairing below is not vacuous
        assert row["vs_x"] == paired_difference(mine, paired, seed=cfg.seed)
    text = table(res)
    assert '| x + "Be brief." |' in text and "[95 % CI]" in text


def test_cli_writes_json_and_refuses_bad_input(tmp_path):
    out = tmp_path / "lever.json"
    res = main(["experiment=smoke", "dataset=concise", "--n", "3", "--instruction", "Be brief.", "--out", str(out)])
    assert json.loads(out.read_text())["rows"][1]["instruction"] == "Be brief." == res["rows"][1]["instruction"]
    for bad, msg in ((["--n", "0"], "--n 0 is invalid"), (["lam=-1"], "lam=-1.0 is invalid")):
        proc = cli.run("alignpro.tools.lever", "experiment=smoke", *bad, timeout=120)
        assert proc.returncode == 2 and msg in proc.stderr and "Traceback" not in proc.stderr


# ---- the contextual test: each kind's best instruction beats the other kinds' best on that kind -----------------
def lever_rows(rewards: dict) -> tuple[list[dict], list[str]]:
    """Probe rows from {instruction or None: {kind: [r per prompt]}}, in the probe's layout."""
    kinds = [k for k, rs in next(iter(rewards.values())).items() for _ in rs]
    rows = [{"instruction": instr, "samples": [{"r": r, "y": "an answer", "kind": k}
                                               for k, rs in per_kind.items() for r in rs]}
            for instr, per_kind in rewards.items()]
    return rows, kinds


def test_a_world_is_contextual_when_each_kinds_best_beats_the_others_best_on_it():
    from alignpro.report.statistics import paired_difference
    from alignpro.tools.lever import contextual_test

    rows, kinds = lever_rows({
        None: {"lookup": [0, 0, 0, 0], "howto": [0, 0, 0, 0]},
        "Be brief.": {"lookup": [3, 4, 3, 5], "howto": [0, -1, 0, -1]},
        "Use a list.": {"lookup": [1, 0, 1, 1], "howto": [2, 3, 2, 4]},
    })
    by_kind, test = contextual_test(rows, kinds)
    assert test["best"] == {"lookup": "Be brief.", "howto": "Use a list."} and test["passed"]
    lookup_check = next(c for c in test["checks"] if c["kind"] == "lookup")
    assert lookup_check["diff"] == paired_difference([3, 4, 3, 5], [1, 0, 1, 1])  # on look-up prompts only
    assert [c["reward_mean"] for c in by_kind["howto"]] == [0, -0.5, 2.75]
    assert by_kind["lookup"][1]["vs_x"] == paired_difference([3, 4, 3, 5], [0, 0, 0, 0])


def test_one_instruction_best_for_every_kind_or_a_gap_within_noise_is_not_contextual():
    from alignpro.tools.lever import contextual_test, verdict

    same_best, kinds = lever_rows({
        None: {"lookup": [0, 0, 0], "howto": [0, 0, 0]},
        "Be brief.": {"lookup": [3, 4, 3], "howto": [3, 2, 4]},
        "Use a list.": {"lookup": [1, 0, 1], "howto": [2, 1, 2]},
    })
    _, test = contextual_test(same_best, kinds)
    assert not test["passed"] and all(c["diff"] is None for c in test["checks"])
    assert "contextual: NO" in verdict(test) and "is also howto's best: FAIL" in verdict(test)
    noisy, kinds = lever_rows({  # howto's best wins on average but not on every prompt: its interval spans 0
        None: {"lookup": [0, 0, 0, 0], "howto": [0, 0, 0, 0]},
        "Be brief.": {"lookup": [3, 4, 3, 5], "howto": [3, -2, 3, -2]},
        "Use a list.": {"lookup": [1, 0, 1, 1], "howto": [-1, 3, -1, 3]},
    })
    _, test = contextual_test(noisy, kinds)
    assert test["best"] == {"lookup": "Be brief.", "howto": "Use a list."}
    assert [c["passed"] for c in test["checks"]] == [True, False] and not test["passed"]


def test_the_probe_takes_n_train_prompts_of_each_kind():
    from alignpro.tools.lever import probe_prompts

    train = [{"prompt": f"p{i}", "kind": k} for i, k in enumerate(["a", "b", "a", "c", "a", "b"])]
    assert [r["prompt"] for r in probe_prompts(train, 2)] == ["p0", "p2", "p1", "p5", "p3"]
    plain = [{"prompt": f"p{i}", "kind": None} for i in range(5)]
    assert probe_prompts(plain, 3) == plain[:3]


def test_sampling_eval_answers_as_the_held_out_evaluation_samples(tmp_path, lively_lm):
    """--sampling eval: the frozen model answers with eval.sampling, not frozen.sampling. With a greedy eval.sampling
    two seeds give the same answers; the (sampled) training setting gives different ones."""
    model, tok = lively_lm
    model.save_pretrained(tmp_path / "frozen")
    tok.save_pretrained(tmp_path / "frozen")

    def answers(sampling: str, seed: int) -> list[str]:
        cfg = compose("experiment=smoke", "dataset=concise", "frozen.source=hub",
                      f"frozen.model_id={tmp_path / 'frozen'}", "eval.sampling.temperature=0", f"seed={seed}")
        res = probe(cfg, ["Be brief."], n=4, sampling=sampling)
        assert res["sampling"] == sampling and f"{sampling} sampling" in table(res)
        return [s["y"] for row in res["rows"] for s in row["samples"]]

    assert answers("eval", 0) == answers("eval", 1)
    assert answers("train", 0) != answers("train", 1)
