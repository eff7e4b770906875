import math

import pytest
import torch

from alignpro.reward import build_reward
from alignpro.reward_bt import BTHead, bt_loss, preference_pairs
from tests.conftest import compose


def test_bt_loss_is_eq_1():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = -(math.log(1 / (1 + math.exp(-1))) + math.log(1 / (1 + math.exp(1)))) / 2
    assert bt_loss(rc, rr).item() == pytest.approx(expected)


def test_head_depends_on_prompt_and_answer():
    head = BTHead(dim=4, hidden=8)
    u, v = torch.randn(3, 4), torch.randn(3, 4)
    assert head(u, v).shape == (3,)
    assert not torch.allclose(head(u, v), head(torch.randn(3, 4), v))


def test_offtopic_pairs_use_another_prompts_answer():
    recs = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(4)]
    plain = preference_pairs(recs, offtopic=False, seed=0)
    both = preference_pairs(recs, offtopic=True, seed=0)
    assert plain == [(f"p{i}", f"c{i}", f"r{i}") for i in range(4)]
    assert len(both) == 8
    assert all(x == f"p{x[1:]}" and c == f"c{x[1:]}" and o != c and o.startswith("c") for x, c, o in both[4:])


def test_tiny_bt_reward_scores_and_learns(tiny_reward):
    out = tiny_reward.score(["a", "b"], ["c", "d"])
    assert len(out) == 2 and all(isinstance(v, float) for v in out)
    assert tiny_reward.stats["train_accuracy"] > 0.6  # fitted on the train pairs, well above chance
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        tiny_reward.score(["a", "b"], ["c"])
    assert tiny_reward.score([], []) == []


def test_bt_reward_head_is_cached(tmp_path, monkeypatch, embedded_splits):
    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path))
    cfg = compose("reward=tiny").reward
    first = build_reward(cfg, embedded_splits.train, embedded_splits.heldout)
    second = build_reward(cfg, embedded_splits.train, embedded_splits.heldout)
    assert first.stats["cached"] is False and second.stats["cached"] is True
    assert first.stats["heldout_accuracy"] == second.stats["heldout_accuracy"]
    assert first.score(["q"], ["a"]) == pytest.approx(second.score(["q"], ["a"]))
