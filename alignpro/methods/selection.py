"""Arms that select instead of train.

``fixed_instruction`` (static prompt optimisation, the job APE, OPRO or DSPy do for a whole task) answers, for every
train prompt (or a seeded sample of ``method.select_prompts``), x + each instruction of the menu (``sft.instructions``)
with π_F's training sampling, scores r(x, y) against x, and keeps the instruction with the best mean reward. At
evaluation every x becomes x + that instruction: one prompt for every query, which is what a system prompt gives.
Per-query rewriting (Align-Pro) is worth its RL only where it beats this arm, which it can where the best wording
depends on the query (``dataset=context``).

``best_of_n`` (inference-time selection) spends its budget at test time instead: for each held-out x, ρ_ref writes
``method.n_rewrites`` rewrites, π_F answers each, and the answer with the best r(x, y) is the arm's answer. It needs
the reward at test time and costs N frozen and N reward calls per query, both counted in ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from statistics import fmean as mean
from typing import Any

from alignpro.methods.base import Arm, Job, Method
from alignpro.methods.rollout import Rollout, roll_out
from alignpro.methods.sft import instruction_menu
from alignpro.models.prompter import compose_rewrite
from alignpro.models.sampling import PromptCuts, Sampling
from alignpro.run.directory import write_atomic

log = logging.getLogger("alignpro")


@dataclass
class FixedRewriter:
    """x′ = x + " " + instruction for every x: a prompter that never reads x."""

    instruction: str
    cuts: PromptCuts = field(default_factory=PromptCuts)  # nothing is cut: there is no model input

    def rewrite(self, prompts: list[str], sampling: Sampling | None = None, desc: str | None = None) -> list[str]:
        return [compose_rewrite(x, self.instruction, "append") for x in prompts]


def score_menu(job: Job, menu: list[str], records: list[dict]) -> list[dict]:
    """Mean r(x, y) of π_F's answers to x + each instruction, on the same prompts and the same random stream; where
    the prompts have kinds, also per kind (``by_kind``: each kind's best instruction, found on train prompts, is what
    the comparison checks a per-query prompter against)."""
    from transformers import set_seed

    xs, kinds = [r["prompt"] for r in records], [r.get("kind") for r in records]
    rows = []
    for instruction in menu:
        set_seed(job.cfg.seed)
        out = roll_out(xs, job.reward, x_prime=FixedRewriter(instruction).rewrite(xs), responder=job.frozen,
                       judge=job.cfg.reward.prompt, desc=f"select: x + {instruction!r}", timer=job.timer)
        row = {"instruction": instruction, "reward_mean": mean(out.r), "words": mean([len(y.split()) for y in out.y])}
        if any(kinds):
            row["by_kind"] = {k: mean([r for r, kr in zip(out.r, kinds, strict=True) if kr == k])
                              for k in dict.fromkeys(kinds)}
        rows.append(row)
    return rows


@dataclass
class BestOfNRollout:
    """The held-out roll-out of ``best_of_n``: N rewrites per x from ρ_ref, each answered, the best r(x, y) kept."""

    prompter: Any
    responder: Any
    n: int
    judge: str = "original"
    calls: dict = field(default_factory=lambda: {"frozen_calls": 0, "reward_calls": 0})

    def __call__(self, xs: list[str], reward: Any, answer: Sampling, rewrite: Sampling) -> Rollout:
        many = [x for x in xs for _ in range(self.n)]
        rewrites = self.prompter.rewrite(many, rewrite, desc=f"eval: {self.n} rewrites per x")
        out = roll_out(many, reward, x_prime=rewrites, responder=self.responder, sampling=answer,
                       judge=self.judge, desc="eval: answer every rewrite")
        self.calls["frozen_calls"] += len(many)
        self.calls["reward_calls"] += len(many)
        best = [max(range(i * self.n, (i + 1) * self.n), key=lambda j: out.r[j]) for i in range(len(xs))]
        return Rollout(list(xs), [rewrites[j] for j in best], [out.y[j] for j in best], [out.r[j] for j in best],
                       out.truncated)


class BestOfN(Method):
    """N rewrites from ρ_ref per held-out x, each answered by π_F; the answer with the best r(x, y) is kept."""

    def run(self, job: Job) -> Arm:
        from alignpro.methods.sft import reference_prompter
        from alignpro.models.generation import GenerationEngine
        from alignpro.models.prompter import load_prompter

        cfg = job.cfg
        engine = GenerationEngine.from_config(cfg.generation)
        prompter = load_prompter(cfg.prompter, path=reference_prompter(job), device=job.device, engine=engine)
        select = BestOfNRollout(prompter, job.frozen, cfg.method.n_rewrites, cfg.reward.prompt)
        cost = {"n_rewrites": select.n, "frozen_calls_per_query": select.n, "reward_calls_per_query": select.n}
        return Arm(cfg.method.name, prompter, job.frozen, facts={"best_of_n": {**cost, "calls": select.calls}},
                   roll_out=select)


class FixedInstruction(Method):
    """The best single instruction of the menu, by mean train reward, appended to every x."""

    def run(self, job: Job) -> Arm:
        cfg = job.cfg
        menu = instruction_menu(cfg.sft)
        every = cfg.method.select_prompts is None or cfg.method.select_prompts >= len(job.train_records)
        n = len(job.train_records) if every else cfg.method.select_prompts
        # train prompts only, never held-out ones: all of them (the fair pick), or a seeded sample (a cheaper one)
        records = job.train_records if every else random.Random(cfg.seed).sample(job.train_records, n)
        with job.timer("selection"):
            rows = score_menu(job, menu, records)
        best = max(rows, key=lambda row: row["reward_mean"])
        selection = {"instruction": best["instruction"], "reward_mean": best["reward_mean"], "n_prompts": n,
                     "frozen_calls": n * len(menu), "reward_calls": n * len(menu), "menu": rows}
        write_atomic(job.run_dir.selection, json.dumps(selection, indent=2, ensure_ascii=False))
        log.info("fixed instruction: %r, mean train reward %.3f over %d prompts (menu of %d)",
                 best["instruction"], best["reward_mean"], n, len(menu))
        if job.tracker is not None:
            job.tracker.table("selection/menu", [  # one column per kind: a W&B table cell holds no dict
                {**{k: v for k, v in row.items() if k != "by_kind"},
                 **{f"reward_mean/{kind}": v for kind, v in row.get("by_kind", {}).items()}} for row in rows])
            job.tracker.log({"selection/reward_mean": best["reward_mean"], "selection/frozen_calls": n * len(menu)})
        return Arm(cfg.method.name, FixedRewriter(best["instruction"]), job.frozen, facts={"selection": selection})
