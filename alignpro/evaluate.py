"""Held-out evaluation, the same for every method: answer each prompt, score r(x, y), summarise (D8, D10).

Answers are sampled with the paper's evaluation settings (temperature 1.5, top_p 0.6, top_k 20; D8) unless
configured otherwise; the prompter's rewrite uses the same sampling unless ``eval.rewrite_sampling`` overrides it.
The reward always judges against the original prompt x, whatever the training ablation, so arms compare on one scale.
"""

from __future__ import annotations

from alignpro.methods import Arm
from alignpro.metrics import summarize
from alignpro.reward import Reward
from alignpro.rollout import Sampling


def eval_samplings(eval_cfg, answer_tokens: int, rewrite_tokens: int) -> tuple[Sampling, Sampling]:
    """(answer sampling, rewrite sampling) from the ``eval`` block."""
    s = eval_cfg.sampling
    answer = Sampling(eval_cfg.max_new_tokens or answer_tokens, s.temperature, s.top_p, s.top_k)
    r = eval_cfg.rewrite_sampling or s
    rewrite = Sampling(rewrite_tokens, r.temperature, r.top_p, r.top_k)
    return answer, rewrite


def evaluate(arm: Arm, prompts: list[str], reward: Reward, answer: Sampling, rewrite: Sampling,
             samples_per_prompt: int = 1, n_resamples: int = 2000, seed: int = 0) -> tuple[dict, list[dict]]:
    """Per-response rewards of ``arm`` on ``prompts``; returns (summary, rows of x, x′, y, r)."""
    xs = [x for x in prompts for _ in range(samples_per_prompt)]
    rewrites = arm.prompter.rewrite(xs, rewrite, desc="eval: rewrite") if arm.prompter else list(xs)
    answers = arm.responder.answer(rewrites, answer, desc="eval: answer")
    rewards = reward.score(xs, answers)
    rows = [{"x": x, "x_prime": xp if arm.prompter else None, "y": y, "r": r}
            for x, xp, y, r in zip(xs, rewrites, answers, rewards, strict=True)]
    summary = summarize(rewards, n_resamples=n_resamples, seed=seed)
    summary.update(method=arm.name, n_prompts=len(prompts), samples_per_prompt=samples_per_prompt)
    return summary, rows
