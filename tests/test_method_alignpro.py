import json

import pytest

from alignpro.methods.alignpro import AlignProReward
from alignpro.methods.objective import Objective
from alignpro.run.directory import SampleLog
from tests.conftest import RecordingReward


class EchoResponder:
    """A deterministic stand-in for π_F, to check the plumbing of the reward function (not a model)."""

    def __init__(self):
        self.seen = []

    def answer(self, prompts, sampling=None, desc=None):
        self.seen.extend(prompts)
        return [f"answer<{p}>" for p in prompts]


def completions(*texts):
    return [[{"role": "assistant", "content": t}] for t in texts]


def test_frozen_answers_the_rewrite_and_reward_judges_the_original_prompt(tmp_path):
    frozen, reward = EchoResponder(), RecordingReward()
    ep = AlignProReward(frozen, reward, "original", SampleLog(tmp_path / "s.jsonl"))
    metrics = {}
    out = ep(prompts=[None, None], completions=completions("x'1", "x'2"), x=["x", "x"],
             log_metric=metrics.__setitem__)
    assert frozen.seen == ["x'1", "x'2"]  # eq. 3: π_F sees x' only
    assert reward.calls == [(["x", "x"], ["answer<x'1>", "answer<x'2>"])]  # r(x, y), D5
    assert out == [len("answer<x'1>"), len("answer<x'2>")]
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows[0] == {"x": "x", "x_prime": "x'1", "y": "answer<x'1>", "r": out[0]}  # no trainer state: no step
    assert metrics == {"rewrite_chars": 3.0, "answer_chars": len("answer<x'1>"),  # into the step's logged row
                       "empty_rewrites": 0.0, "truncated_rewrites": 0.0}


def test_rewritten_prompt_ablation_scores_x_prime():
    reward = RecordingReward()
    AlignProReward(EchoResponder(), reward, "rewritten")(prompts=[None], completions=completions("x'"), x=["x"])
    assert reward.calls[0][0] == ["x'"]


def test_append_mode_hands_the_frozen_model_x_followed_by_the_instruction(tmp_path):
    frozen, reward = EchoResponder(), RecordingReward()
    ep = AlignProReward(frozen, reward, "original", SampleLog(tmp_path / "s.jsonl"), rewrite="append")
    ep(prompts=[None, None], completions=completions(" Be brief.", ""), x=["Why?", "How?"])
    assert frozen.seen == ["Why? Be brief.", "How?"]  # an empty instruction leaves x as it is
    assert reward.calls[0][0] == ["Why?", "How?"]
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["x_prime"] for r in rows] == ["Why? Be brief.", "How?"]


# ---- eq. 9: the objective TRL optimises is the paper's, and its value is logged ------------------------------------
def test_the_trl_lines_quoted_in_the_docstring_are_trls():
    """The module docstring quotes where TRL subtracts β·Σ log ρ/ρ_ref; each quoted line must be in TRL's source, so
    the explanation of β = λ cannot drift from the TRL the project pins."""
    import inspect

    from trl import RLOOTrainer

    import alignpro.methods.alignpro as method

    quoted = [line.strip() for line in method.__doc__.splitlines() if line.startswith("       ") and "=" in line]
    assert len(quoted) == 3
    src = inspect.getsource(RLOOTrainer._generate_and_score_completions)
    for line in quoted:
        assert line in src, line


def test_objective_is_reward_minus_lambda_times_the_sequence_kl():
    logs = {"kl": 0.02, "completions/mean_length": 30.0, "reward": 1.0}
    Objective(0.5).on_log(None, None, None, logs=logs)
    assert logs["kl_seq"] == pytest.approx(0.6)  # per-token mean × tokens per rewrite = Σ_t per rewrite
    assert logs["objective"] == pytest.approx(1.0 - 0.5 * 0.6)
    untouched = {"loss": 1.0}
    Objective(0.5).on_log(None, None, None, logs=untouched)
    assert untouched == {"loss": 1.0}


def test_a_trained_prompter_got_beta_equal_to_lambda_and_logged_eq9_each_step(tmp_path, tiny_reward, embedded_splits):
    """A real (tiny) Align-Pro run: TRL's saved arguments carry β = λ, and every logged step has
    objective = reward − λ·kl_seq with kl_seq = kl × mean rewrite length."""
    import torch

    from alignpro.methods.base import Job
    from alignpro.methods.registry import build_method
    from alignpro.models.frozen import build_frozen
    from alignpro.run.directory import RunDir
    from tests.conftest import compose

    lam = 0.37
    cfg = compose("experiment=smoke", "method=alignpro", f"lam={lam}", "trainer.learning_rate=1e-2",
                  "trainer.max_steps=3")
    files = RunDir(tmp_path)
    arm = build_method(cfg.method).run(Job(cfg, embedded_splits.train, tiny_reward, build_frozen(cfg.frozen), files))
    assert arm.name == "alignpro" and arm.prompter is not None
    args = torch.load(files.model("prompter") / "training_args.bin", weights_only=False)
    assert args.beta == lam
    steps = [row for row in files.read_train_log() if "reward" in row]
    assert [row["step"] for row in steps] == [1, 2, 3]
    for row in steps:
        assert row["kl_seq"] == pytest.approx(row["kl"] * row["completions/mean_length"])
        assert row["objective"] == pytest.approx(row["reward"] - lam * row["kl_seq"])
    assert any(abs(row["kl_seq"]) > 1e-6 for row in steps[1:])  # the policy moved: the KL term is not vacuous
    per_step = cfg.trainer.prompts_per_step * cfg.trainer.num_generations
    samples = [json.loads(line) for line in files.samples.read_text().splitlines()]
    assert [s["step"] for s in samples] == [s for s in (0, 1, 2) for _ in range(per_step)]


def test_training_samples_carry_the_kind_of_their_prompt(tmp_path):
    """dataset=context end to end on the tiny models: TRL hands each train prompt's kind to the reward function as a
    column, so every training sample records it, and the comparison's per-kind training panel reads it back."""
    from alignpro.data.preferences import load_splits
    from alignpro.report.compare import training_by_kind
    from alignpro.run.directory import RunDir
    from alignpro.train import train
    from tests.conftest import compose

    cfg = compose("experiment=smoke", "dataset=context", "logger=none")
    train(cfg, tmp_path, group="test", name="kinds")
    kinds = {r["prompt"]: r["kind"] for r in load_splits(cfg.dataset).train}
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert rows and all(r["kind"] == kinds[r["x"]] for r in rows)
    held = RunDir(tmp_path).read_eval_samples()  # as the comparison loads a run: its held-out samples carry kinds
    assert held and all(s.kind == {r["prompt"]: r["kind"] for r in load_splits(cfg.dataset).heldout}[s.x] for s in held)
    by_kind = training_by_kind({"alignpro": {0: {"dir": str(tmp_path), "samples": held}}})
    assert sum(n for by_step in by_kind.values() for c in by_step.values() for n in c.values()) == len(rows)
    assert set(by_kind) == {r["kind"] for r in rows}
