"""The chain x → x′ → y → r(x, y) → samples (alignpro/methods/rollout.py) that training, evaluation and the lever
share: who sees what, in which order, and what the samples carry."""

import json

import pytest

from alignpro.methods.rollout import Rollout, TrainingReward, roll_out
from alignpro.run.directory import RunDir
from alignpro.run.errors import NonFiniteError
from alignpro.run.timing import StageTimer
from tests.conftest import RecordingReward


class EchoResponder:
    """A stand-in for π_F that records each call (prompts, sampling, desc) and how many prompts it 'cut'."""

    def __init__(self, events=None):
        self.calls, self.events = [], events if events is not None else []

    def answer(self, prompts, sampling=None, desc=None):
        self.calls.append((list(prompts), sampling, desc))
        self.events.append("answer")
        return [f"answer<{p}>" for p in prompts]


class OrderedReward(RecordingReward):
    def __init__(self, events):
        super().__init__()
        self.events = events

    def score(self, prompts, responses):
        self.events.append("score")
        return super().score(prompts, responses)


def test_the_responder_sees_x_prime_and_the_reward_the_original_x():
    frozen, reward = EchoResponder(), RecordingReward()
    out = roll_out(["x1", "x2"], reward, x_prime=["x'1", "x'2"], responder=frozen, sampling="s", desc="d")
    assert frozen.calls == [(["x'1", "x'2"], "s", "d")]  # eq. 3: one call, x′ only
    assert reward.calls == [(["x1", "x2"], ["answer<x'1>", "answer<x'2>"])]  # D5: r(x, y), one call
    assert (out.x, out.x_prime, out.y) == (["x1", "x2"], ["x'1", "x'2"], ["answer<x'1>", "answer<x'2>"])
    assert out.r == [float(len("answer<x'1>"))] * 2 and out.asked == ["x'1", "x'2"]


def test_the_rewritten_ablation_scores_against_x_prime():
    reward = RecordingReward()
    roll_out(["x"], reward, x_prime=["x'"], responder=EchoResponder(), judge="rewritten")
    assert reward.calls[0][0] == ["x'"]
    with pytest.raises(ValueError, match="judge='x' is unknown"):
        roll_out(["x"], reward, x_prime=["x'"], responder=EchoResponder(), judge="x")


def test_without_a_rewrite_the_responder_answers_x_itself():
    frozen = EchoResponder()
    out = roll_out(["x"], RecordingReward(), responder=frozen)
    assert frozen.calls == [(["x"], None, None)] and out.x_prime is None and out.asked == ["x"]
    assert out.samples()[0].row() == {"x": "x", "x_prime": None, "y": "answer<x>", "r": 9.0}


def test_answers_already_written_are_only_scored():
    """The oracle's training rollouts: the policy's completion is y to x; no model is called."""
    reward = RecordingReward()
    out = roll_out(["x"], reward, y=["yes"])
    assert reward.calls == [(["x"], ["yes"])] and out.r == [3.0] and out.truncated == 0
    with pytest.raises(ValueError, match="not both"):
        roll_out(["x"], reward, y=["yes"], responder=EchoResponder())
    with pytest.raises(ValueError, match="not both"):
        roll_out(["x"], reward)


def test_pi_f_answers_before_the_reward_scores_and_each_stage_is_timed():
    events, timer = [], StageTimer()
    roll_out(["x"], OrderedReward(events), x_prime=["x'"], responder=EchoResponder(events), timer=timer)
    assert events == ["answer", "score"]
    assert timer.calls == {"frozen_generation": 1, "reward": 1}


def test_samples_carry_x_x_prime_y_r_the_step_and_the_direct_answers():
    out = Rollout(["x1", "x2"], ["", "x'2"], ["y1", "y2"], [1.0, 2.0])
    direct = Rollout(["x1", "x2"], None, ["d1", "d2"], [0.5, 0.25])
    assert out.empty_rewrites == 1 and Rollout(["x"], None, ["y"], [0.0]).empty_rewrites == 0
    assert [s.row() for s in out.samples(step=3)] == [{"step": 3, "x": "x1", "x_prime": "", "y": "y1", "r": 1.0},
                                                       {"step": 3, "x": "x2", "x_prime": "x'2", "y": "y2", "r": 2.0}]
    assert out.samples(direct=direct)[1].row() == {"x": "x2", "x_prime": "x'2", "y": "y2", "r": 2.0,
                                                   "y_direct": "d2", "r_direct": 0.25}


def test_a_responder_that_cuts_its_inputs_is_counted_per_rollout():
    from alignpro.models.sampling import PromptCuts

    class Cutting(EchoResponder):
        cuts = PromptCuts(n=5)  # cuts of earlier batches are not this rollout's

        def answer(self, prompts, sampling=None, desc=None):
            self.cuts.n += 1  # one input cut per call
            return super().answer(prompts, sampling, desc)

    frozen = Cutting()
    assert roll_out(["x"], RecordingReward(), x_prime=["x'"], responder=frozen).truncated == 1


def test_a_training_reward_writes_its_batch_with_the_step_and_stops_on_a_non_finite_reward(tmp_path):
    class State:
        global_step, max_steps = 2, 5

    class Named(TrainingReward):
        __name__ = "named"

    files = RunDir(tmp_path)
    fn = Named(RecordingReward(), files.sample_log(), run_dir=files)
    assert fn.keep(Rollout(["x"], ["x'"], ["y"], [1.0]), State()) == [1.0]
    assert [json.loads(line) for line in files.samples.read_text().splitlines()] == [
        {"step": 2, "x": "x", "x_prime": "x'", "y": "y", "r": 1.0}]
    with pytest.raises(NonFiniteError, match=r"training step 3/5 \(the named reward\)"):
        fn.keep(Rollout(["x"], None, ["y"], [float("nan")]), State())
    assert len(files.samples.read_text().splitlines()) == 1  # the bad batch never reaches samples.jsonl
