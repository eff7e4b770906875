import json
import math
import multiprocessing
import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from alignpro.models.reward import build_reward
from alignpro.models.reward_bt import BTHead, bt_loss, preference_pairs, rejected_answers
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


def test_empty_answers_are_scored_not_a_crash(tiny_reward):
    """A frozen model may answer nothing; the tiny tokenizer adds no special tokens, so a batch of empty answers has no
    token at all: it scores as the zero embedding, the same as when it shares a batch with a non-empty answer."""
    alone = tiny_reward.score(["What is a river?"], [""])
    mixed = tiny_reward.score(["What is a river?", "What is a lake?"], ["", "Water."])
    assert alone[0] == mixed[0] and all(map(math.isfinite, alone + mixed))


def test_encode_runs_each_distinct_text_once_in_batches_of_similar_length(tiny_reward):
    """What a reward fit relies on for speed: a text repeated across pairs is encoded once, and a batch holds texts of
    similar token length (a batch is padded to its longest). The embeddings come back in the caller's order and equal
    each text encoded alone."""
    enc = tiny_reward.encoder
    words = "the river runs down to the sea and the sea is wide".split()
    texts = [" ".join(words[: n]) for n in (1, 11, 2, 10, 3, 9, 1, 11)]  # lengths mixed, two texts repeated
    seen: list[tuple[int, ...]] = []
    hook = enc.model.register_forward_hook(lambda m, args, kwargs, out: seen.append(tuple(kwargs["input_ids"].shape)),
                                           with_kwargs=True)
    old_batch, enc.batch_size = enc.batch_size, 2
    try:
        together = enc.encode(texts)
        seen_together = list(seen)
        alone = torch.cat([enc.encode([t]) for t in texts])
    finally:
        enc.batch_size = old_batch
        hook.remove()
    assert sum(rows for rows, _ in seen_together) == len(set(texts)) == 6
    lengths = sorted((len(enc.tokenizer(t)["input_ids"]) for t in set(texts)), reverse=True)
    assert [width for _, width in seen_together] == lengths[::2]  # the longest of each pair of neighbours
    assert torch.allclose(together, alone, atol=1e-6)
    assert torch.equal(together[0], together[6]) and torch.equal(together[1], together[7])


def test_bt_reward_head_is_cached(tmp_path, monkeypatch, embedded_splits):
    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path))
    cfg = compose("reward=tiny").reward
    first = build_reward(cfg, embedded_splits.train, embedded_splits.heldout)
    second = build_reward(cfg, embedded_splits.train, embedded_splits.heldout)
    assert first.stats["cached"] is False and second.stats["cached"] is True
    assert first.stats["heldout_accuracy"] == second.stats["heldout_accuracy"]
    assert first.score(["q"], ["a"]) == pytest.approx(second.score(["q"], ["a"]))


def _fit_tiny_reward(cache: str, barrier, results) -> None:
    os.environ["ALIGNPRO_CACHE"] = cache
    from alignpro.data.preferences import load_splits

    splits = load_splits(compose().dataset)
    cfg = compose("reward=tiny").reward
    barrier.wait()  # both jobs ask for the reward head at the same moment
    rm = build_reward(cfg, splits.train, splits.heldout)
    results.put((rm.stats["cached"], rm.stats["heldout_accuracy"], rm.score(["q"], ["a"])[0]))


def test_jobs_fitting_the_same_reward_at_once_fit_it_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    jobs = [ctx.Process(target=_fit_tiny_reward, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(120)
    assert [job.exitcode for job in jobs] == [0, 0]
    (cached_a, *rest_a), (cached_b, *rest_b) = sorted(results.get(timeout=5) for _ in range(2))
    assert (cached_a, cached_b) == (False, True)  # one job fitted the head, the other waited and read it
    assert rest_a == pytest.approx(rest_b)
    entries = sorted(p.name for p in (tmp_path / "reward").iterdir())
    assert len(entries) == 2 and entries[1] == f"{entries[0]}.lock", entries
    assert sorted(p.name for p in (tmp_path / "reward" / entries[0]).iterdir()) == ["head.pt", "stats.json"]


def test_a_half_written_reward_entry_is_refitted_not_read(tmp_path, monkeypatch, embedded_splits):
    """What an in-place writer killed between its two files leaves: a broken head.pt and no stats.json."""
    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path))
    cfg = compose("reward=tiny").reward
    first = build_reward(cfg, embedded_splits.train, embedded_splits.heldout)
    entry = Path(first.stats["cache_dir"])
    (entry / "stats.json").unlink()
    (entry / "head.pt").write_bytes(b"half a tensor")
    again = build_reward(cfg, embedded_splits.train, embedded_splits.heldout)
    assert again.stats["cached"] is False and again.score(["q"], ["a"]) == pytest.approx(first.score(["q"], ["a"]))
    assert json.loads((entry / "stats.json").read_text())["heldout_accuracy"] == first.stats["heldout_accuracy"]


def test_the_held_out_accuracy_is_also_reported_per_kind(tmp_path, monkeypatch):
    """dataset=context: one accuracy per kind of prompt, which together make up the overall one."""
    from alignpro.data.preferences import load_splits

    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path))
    splits = load_splits(compose("dataset=context").dataset)
    stats = build_reward(compose("reward=tiny").reward, splits.train, splits.heldout).stats
    counts = Counter(r["kind"] for r in splits.heldout for _ in rejected_answers(r))  # held-out pairs per kind
    assert counts == {k: 2 * n for k, n in Counter(r["kind"] for r in splits.heldout).items()}  # two per prompt
    by_kind = stats["heldout_accuracy_by_kind"]
    assert set(by_kind) == {"lookup", "howto", "why"}
    assert all(0 <= acc <= 1 and (acc * counts[k]).is_integer() for k, acc in by_kind.items())
    overall = sum(by_kind[k] * counts[k] for k in counts) / sum(counts.values())
    assert overall == pytest.approx(stats["heldout_accuracy"])
    again = build_reward(compose("reward=tiny").reward, splits.train, splits.heldout).stats  # from the cache
    assert again["cached"] and again["heldout_accuracy_by_kind"] == by_kind
    plain = load_splits(compose().dataset)  # a world without kinds has no breakdown
    assert "heldout_accuracy_by_kind" not in build_reward(compose("reward=tiny").reward, plain.train,
                                                          plain.heldout).stats


def test_a_second_rejected_answer_is_a_second_pair():
    recs = [{"prompt": "q?", "chosen": "short", "rejected": "1. a list", "rejected_other": "a paragraph"},
            {"prompt": "p?", "chosen": "c", "rejected": "r", "rejected_other": None},
            {"prompt": "o?", "chosen": None, "rejected": "r", "rejected_other": "s"}]  # no chosen: no pair
    assert preference_pairs(recs, offtopic=False, seed=0) == [("q?", "short", "1. a list"),
                                                               ("q?", "short", "a paragraph"), ("p?", "c", "r")]
