import json

import pytest

from alignpro.episode import AlignProEpisode, OracleEpisode, SampleLog, StageTimer, completion_text


class EchoFrozen:
    """A deterministic stand-in for π_F, to check the plumbing of the episode (not a model)."""

    def __init__(self):
        self.seen = []

    def answer(self, prompts, sampling=None, desc=None):
        self.seen.extend(prompts)
        return [f"answer<{p}>" for p in prompts]


class RecordingReward:
    def __init__(self):
        self.calls = []

    def score(self, prompts, responses):
        self.calls.append((list(prompts), list(responses)))
        return [float(len(r)) for r in responses]


def completions(*texts):
    return [[{"role": "assistant", "content": t}] for t in texts]


def test_frozen_answers_the_rewrite_and_reward_judges_the_original_prompt(tmp_path):
    frozen, reward = EchoFrozen(), RecordingReward()
    ep = AlignProEpisode(frozen, reward, "original", SampleLog(tmp_path / "s.jsonl"))
    extra = {}
    out = ep(prompts=[None, None], completions=completions("x'1", "x'2"), x=["x", "x"],
             log_extra=lambda k, v: extra.setdefault(k, v), log_metric=lambda k, v: None)
    assert frozen.seen == ["x'1", "x'2"]  # eq. 3: π_F sees x' only
    assert reward.calls == [(["x", "x"], ["answer<x'1>", "answer<x'2>"])]  # r(x, y), D5
    assert out == [len("answer<x'1>"), len("answer<x'2>")]
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows[0] == {"step": None, "x": "x", "x_prime": "x'1", "y": "answer<x'1>", "r": out[0]}
    assert extra["y"] == ["answer<x'1>", "answer<x'2>"]


def test_rewritten_prompt_ablation_scores_x_prime():
    reward = RecordingReward()
    AlignProEpisode(EchoFrozen(), reward, "rewritten")(prompts=[None], completions=completions("x'"), x=["x"])
    assert reward.calls[0][0] == ["x'"]


def test_unknown_reward_prompt():
    with pytest.raises(ValueError, match="reward.prompt='both'.*original, rewritten"):
        AlignProEpisode(EchoFrozen(), RecordingReward(), "both")


def test_oracle_scores_its_own_completion_against_x():
    reward = RecordingReward()
    OracleEpisode(reward)(prompts=[None], completions=completions("y"), x=["x"])
    assert reward.calls == [(["x"], ["y"])]


def test_stage_timer_and_completion_text():
    t = StageTimer()
    f = t.wrap("stage", lambda a: a + 1)
    assert f(1) == 2 and t.calls["stage"] == 1 and t.seconds["stage"] >= 0
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "a"}]) == "a"


def test_append_mode_hands_the_frozen_model_x_followed_by_the_instruction(tmp_path):
    frozen, reward = EchoFrozen(), RecordingReward()
    ep = AlignProEpisode(frozen, reward, "original", SampleLog(tmp_path / "s.jsonl"), rewrite="append")
    ep(prompts=[None, None], completions=completions(" Be brief.", ""), x=["Why?", "How?"])
    assert frozen.seen == ["Why? Be brief.", "How?"]  # an empty instruction leaves x as it is
    assert reward.calls[0][0] == ["Why?", "How?"]
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["x_prime"] for r in rows] == ["Why? Be brief.", "How?"]
