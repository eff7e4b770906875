"""The lever probe (alignpro/tools/lever.py): answers to x and to x + instruction, paired per train prompt."""

import json
import subprocess
import sys

import pytest

from alignpro.tools.lever import main, probe, table
from tests.conftest import ROOT, compose


def test_probe_pairs_each_instruction_with_x_on_train_prompts(tmp_path):
    cfg = compose("experiment=smoke", "dataset=concise")
    res = probe(cfg, ["Be brief.", "Use a list."], n=5)
    assert res["split"] == "train" and res["n_prompts"] == 5
    assert [r["instruction"] for r in res["rows"]] == [None, "Be brief.", "Use a list."]
    base = res["rows"][0]
    for row in res["rows"][1:]:
        assert row["example"]["x_prime"].endswith(" " + row["instruction"])
        d = row["vs_x"]
        assert d["n_pairs"] == 5
        assert d["diff_mean"] == pytest.approx(row["reward_mean"] - base["reward_mean"])
    from alignpro.data.preferences import load_splits

    heldout = {r["prompt"] for r in load_splits(cfg.dataset).heldout}
    assert base["example"]["x_prime"] not in heldout  # never probes held-out prompts
    text = table(res)
    assert '| x + "Be brief." |' in text and "[95 % CI]" in text


def test_cli_writes_json_and_refuses_bad_input(tmp_path):
    out = tmp_path / "lever.json"
    res = main(["experiment=smoke", "dataset=concise", "--n", "3", "--instruction", "Be brief.", "--out", str(out)])
    assert json.loads(out.read_text())["rows"][1]["instruction"] == "Be brief." == res["rows"][1]["instruction"]
    for bad, msg in ((["--n", "0"], "--n 0 is invalid"), (["lam=-1"], "lam=-1.0 is invalid")):
        proc = subprocess.run([sys.executable, "-m", "alignpro.tools.lever", "experiment=smoke", *bad],
                              capture_output=True,
                              text=True, cwd=ROOT, timeout=120)
        assert proc.returncode != 0 and msg in proc.stderr and "Traceback" not in proc.stderr
