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
