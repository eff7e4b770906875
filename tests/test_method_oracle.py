import json

from alignpro.methods.oracle import OracleReward
from alignpro.run.directory import SampleLog
from tests.conftest import RecordingReward


def test_oracle_scores_its_own_completion_against_x(tmp_path):
    reward = RecordingReward()
    out = OracleReward(reward, SampleLog(tmp_path / "s.jsonl"))(
        prompts=[None, None], completions=[[{"role": "assistant", "content": "yes"}], "no!"], x=["a", "b"])
    assert reward.calls == [(["a", "b"], ["yes", "no!"])]  # no rewrite: r(x, y) of the policy's own answer
    assert out == [3.0, 3.0]
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows == [{"x": "a", "x_prime": None, "y": "yes", "r": 3.0},
                    {"x": "b", "x_prime": None, "y": "no!", "r": 3.0}]


def test_the_oracle_trains_the_frozen_model_with_beta_lambda_and_answers_x_itself(tmp_path, tiny_reward,
                                                                                  embedded_splits):
    import torch

    from alignpro.methods.base import Job
    from alignpro.methods.registry import build_method
    from alignpro.run.directory import RunDir
    from tests.conftest import compose

    cfg = compose("experiment=smoke", "method=rlhf", "lam=0.6")
    files = RunDir(tmp_path)
    arm = build_method(cfg.method).run(Job(cfg, embedded_splits.train, tiny_reward, None, files))  # no π_F is loaded
    assert arm.prompter is None and arm.name == "rlhf"
    assert torch.load(files.model("oracle") / "training_args.bin", weights_only=False).beta == 0.6
    rows = [row for row in files.read_train_log() if "reward" in row]
    assert rows and all(row["objective"] == row["reward"] - 0.6 * row["kl_seq"] for row in rows)
    assert all(json.loads(line)["x_prime"] is None for line in files.samples.read_text().splitlines())
