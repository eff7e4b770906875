"""The fixed-instruction arm (alignpro/methods/selection.py): the menu's best instruction on train prompts, appended
to every x."""

import json

from alignpro.methods.base import Job
from alignpro.methods.selection import FixedInstruction, FixedRewriter
from alignpro.train import train
from tests.conftest import compose
from tests.wandb_offline import read_run


class EchoModel:
    """A stand-in for π_F whose answer is what it was asked, so an instruction's words reach the answer; it
    records every prompt it is asked."""

    def __init__(self):
        self.asked: list[str] = []

    def answer(self, prompts, sampling=None, desc=None):
        self.asked += prompts
        return list(prompts)


class Length:
    """A stand-in reward: ±(characters in the answer). Its best instruction is known: the menu's longest or
    shortest."""

    def __init__(self, sign: int):
        self.sign = sign

    def score(self, prompts, responses):
        return [self.sign * float(len(y)) for y in responses]


def job(tmp_path, reward, *overrides: str) -> tuple[Job, EchoModel]:
    from alignpro.data.preferences import load_splits

    cfg = compose("experiment=context", "method=fixed_instruction", *overrides)
    frozen = EchoModel()
    return Job(cfg, load_splits(cfg.dataset).train, reward, frozen, tmp_path), frozen


def test_it_picks_the_instruction_with_the_best_mean_train_reward(tmp_path):
    menu = ["Answer in one short sentence.", "Use a numbered list of steps.", "Explain why, with an example.",
            "Be brief.", "Explain it simply.", "Give a detailed answer with examples."]
    j, frozen = job(tmp_path / "long", Length(+1), "method.select_prompts=5")
    arm = FixedInstruction().run(j)
    assert list(j.cfg.sft.instructions) == menu
    assert arm.prompter.instruction == "Give a detailed answer with examples." == arm.facts["selection"]["instruction"]
    # each instruction answered on the same 5 train prompts, never a held-out one
    from alignpro.data.preferences import load_splits

    splits = load_splits(j.cfg.dataset)
    train_xs, held = {r["prompt"] for r in splits.train}, {r["prompt"] for r in splits.heldout}
    assert len(frozen.asked) == 5 * len(menu)
    xs = [a[: -len(i) - 1] for a, i in zip(frozen.asked, [i for i in menu for _ in range(5)], strict=True)]
    assert all(x in train_xs and x not in held for x in xs) and len(set(xs)) == 5
    assert xs[:5] * len(menu) == xs
    saved = json.loads((tmp_path / "long" / "selection.json").read_text())
    assert saved == arm.facts["selection"]
    assert [row["instruction"] for row in saved["menu"]] == menu
    assert saved["frozen_calls"] == saved["reward_calls"] == 30 and saved["n_prompts"] == 5
    means = {row["instruction"]: row["reward_mean"] for row in saved["menu"]}
    assert means["Give a detailed answer with examples."] == max(means.values())
    assert means["Be brief."] == min(means.values())
    # the other reward prefers the other end of the menu
    arm = FixedInstruction().run(job(tmp_path / "short", Length(-1), "method.select_prompts=5")[0])
    assert arm.prompter.instruction == "Be brief."
    # the sample of train prompts is seeded: the same seed draws the same prompts, another seed others
    again, same = job(tmp_path / "again", Length(+1), "method.select_prompts=5")
    FixedInstruction().run(again)
    assert same.asked == frozen.asked
    seed1, other = job(tmp_path / "seed1", Length(+1), "method.select_prompts=5", "seed=1")
    FixedInstruction().run(seed1)
    assert other.asked != frozen.asked
    # the default, null: every train prompt, each with every instruction
    every, model = job(tmp_path / "every", Length(+1))
    assert every.cfg.method.select_prompts is None
    arm = FixedInstruction().run(every)
    assert len(model.asked) == len(splits.train) * len(menu) and arm.facts["selection"]["n_prompts"] == 288
    assert model.asked[: len(splits.train)] == [f"{r['prompt']} {menu[0]}" for r in splits.train]

class LongForLookups:
    """A stand-in reward that depends on x's kind: +len(y) for look-ups, -len(y) for the other kinds."""

    def __init__(self, kinds: dict[str, str]):
        self.kinds = kinds

    def score(self, prompts, responses):
        return [(1.0 if self.kinds[x] == "lookup" else -1.0) * len(y) for x, y in zip(prompts, responses, strict=True)]


def test_the_menu_is_also_scored_per_kind_on_train_prompts(tmp_path):
    """selection.json keeps each instruction's mean train reward per kind: each kind's best instruction, found on
    train prompts, which the comparison checks Align-Pro's held-out rewrites against."""
    from alignpro.data.preferences import load_splits

    splits = load_splits(compose("experiment=context").dataset)
    kinds = {r["prompt"]: r["kind"] for r in splits.train}
    j, frozen = job(tmp_path, LongForLookups(kinds), "method.select_prompts=12")
    FixedInstruction().run(j)
    menu = json.loads((tmp_path / "selection.json").read_text())["menu"]
    asked = [a for a in frozen.asked if a.endswith(" Be brief.")]
    xs = [a[: -len(" Be brief.")] for a in asked]
    for row in menu:
        assert set(row["by_kind"]) == {kinds[x] for x in xs}
        for kind, value in row["by_kind"].items():
            mine = [x for x in xs if kinds[x] == kind]
            sign = 1 if kind == "lookup" else -1
            assert value == sign * sum(len(f"{x} {row['instruction']}") for x in mine) / len(mine)
    best = {kind: max(menu, key=lambda row: row["by_kind"][kind])["instruction"] for kind in menu[0]["by_kind"]}
    assert len(best) == 3  # the sample holds every kind
    assert best == {kind: "Give a detailed answer with examples." if kind == "lookup" else "Be brief."
                    for kind in best}


def test_the_rewriter_appends_its_instruction_to_every_x():
    r = FixedRewriter("Be brief.")
    assert r.rewrite(["What is 2+2?", "Why?"]) == ["What is 2+2? Be brief.", "Why? Be brief."]
    assert r.cuts.n == 0


def test_a_run_evaluates_x_plus_the_chosen_instruction_and_records_the_choice(tmp_path):
    """End to end on the tiny models in the contextual world: metrics.json and W&B (real offline files) name the
    chosen instruction, every held-out x was answered as x + that instruction, and each sample carries x's kind."""
    from alignpro.data.preferences import load_splits

    cfg = compose("experiment=smoke", "dataset=context", "method=fixed_instruction", "sft=instructions",
                  "method.select_prompts=3", "logger.mode=offline")
    train(cfg, tmp_path, group="test", name="fixed")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    chosen = metrics["selection"]["instruction"]
    menu = metrics["selection"]["menu"]
    assert chosen == max(menu, key=lambda row: row["reward_mean"])["instruction"]
    assert chosen in cfg.sft.instructions and metrics["menu_rate"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == cfg.eval.n_prompts and all(r["x_prime"] == f"{r['x']} {chosen}" for r in rows)
    kinds = {r["prompt"]: r["kind"] for r in load_splits(cfg.dataset).heldout}
    assert [r["kind"] for r in rows] == [kinds[r["x"]] for r in rows] and len({r["kind"] for r in rows}) > 1
    assert not (tmp_path / "samples.jsonl").exists()  # nothing trained
    run = read_run(tmp_path / "wandb")
    assert run["job_type"] == "fixed_instruction"
    logged = [row for row in run["history"] if "selection/reward_mean" in row]
    assert [row["selection/reward_mean"] for row in logged] == [metrics["selection"]["reward_mean"]]


class NumberedRewrites:
    """A stand-in for ρ_ref: the i-th call for an x appends "v" i times, so the N rewrites of x differ in length."""

    cuts = None

    def rewrite(self, prompts, sampling=None, desc=None):
        seen: dict[str, int] = {}
        out = []
        for x in prompts:
            seen[x] = seen.get(x, 0) + 1
            out.append(x + " v" * seen[x])
        return out


def test_best_of_n_answers_n_rewrites_per_x_and_keeps_the_best_reward():
    from alignpro.methods.selection import BestOfNRollout
    from alignpro.models.sampling import Sampling

    frozen = EchoModel()
    select = BestOfNRollout(NumberedRewrites(), frozen, n=3)
    s = Sampling(max_new_tokens=8)
    out = select(["a?", "bb?"], Length(+1), s, s)
    assert frozen.asked == ["a? v", "a? v v", "a? v v v", "bb? v", "bb? v v", "bb? v v v"]  # N answers per x
    assert out.x == ["a?", "bb?"] and out.x_prime == ["a? v v v", "bb? v v v"] and out.y == out.x_prime
    assert out.r == [float(len("a? v v v")), float(len("bb? v v v"))]
    assert select.calls == {"frozen_calls": 6, "reward_calls": 6}
    out = BestOfNRollout(NumberedRewrites(), EchoModel(), n=3)(["a?"], Length(-1), s, s)
    assert out.x_prime == ["a? v"]  # the other reward keeps the other end


def test_best_of_n_runs_end_to_end_and_counts_its_test_time_cost(tmp_path):
    cfg = compose("experiment=smoke", "method=best_of_n", "method.n_rewrites=3", "eval.answer_shift=false")
    train(cfg, tmp_path, group="test", name="bon")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_of_n"] == {"n_rewrites": 3, "frozen_calls_per_query": 3, "reward_calls_per_query": 3,
                                    "calls": {"frozen_calls": 3 * cfg.eval.n_prompts,
                                              "reward_calls": 3 * cfg.eval.n_prompts}}
    rows = [json.loads(line) for line in (tmp_path / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == cfg.eval.n_prompts and all(r["x_prime"] for r in rows)
