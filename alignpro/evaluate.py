"""Held-out evaluation, the same for every method: answer each prompt, score r(x, y), summarise (D8, D10).

Answers are sampled with the paper's evaluation settings (temperature 1.5, top_p 0.6, top_k 20; D8) unless
configured otherwise; the prompter's rewrite uses the same sampling unless ``eval.rewrite_sampling`` overrides it.
The reward always judges against the original prompt x, whatever the training ablation, so arms compare on one scale.

For arms with a prompter, ``eval.answer_shift`` also answers x directly and reports how far the frozen model's
answers move when x is replaced by x′ — what Theorem 6.1's second term, r_max·E TV(π_F(·|x), π_F(·|x′)), bounds:

* ``answer_shift_reward`` = mean r(x, y(x)) − mean r(x, y(x′)): the Δ3 of the theorem's proof (a lower bound on
  that term; positive when rewriting hurts);
* ``answer_shift_embedding`` = mean over prompts of 1 − cos(e(y(x)), e(y(x′))), when the reward model can embed
  text (the BT encoder rewards): a distance between single samples of the two answer distributions, 0 = same.

The theorem takes x′ ∼ ρ_ref, which is the ``base_prompter`` arm; for ``alignpro`` the same numbers describe the
trained prompter.
"""

from __future__ import annotations

from alignpro.generation import Sampling
from alignpro.methods import Arm
from alignpro.metrics import mean, summarize
from alignpro.reward import Reward
from alignpro.rundir import Metrics, Sample
from alignpro.schema import EvalConfig


def eval_samplings(eval_cfg: EvalConfig, answer_tokens: int, rewrite_tokens: int) -> tuple[Sampling, Sampling]:
    """(answer sampling, rewrite sampling) from the ``eval`` block."""
    answer = Sampling.from_config(eval_cfg.sampling, eval_cfg.max_new_tokens or answer_tokens)
    rewrite = Sampling.from_config(eval_cfg.rewrite_sampling or eval_cfg.sampling, rewrite_tokens)
    return answer, rewrite


def answer_shift(arm: Arm, xs: list[str], answers: list[str], rewards: list[float], reward: Reward,
                 answer: Sampling) -> tuple[dict, list[str], list[float]]:
    """Theorem 6.1's second term, estimated from samples (see the module docstring)."""
    direct = arm.responder.answer(xs, answer, desc="eval: answer x")
    r_direct = reward.score(xs, direct)
    out = {"answer_shift_reward": mean(r_direct) - mean(rewards), "reward_mean_direct": mean(r_direct)}
    embed = getattr(reward, "embed", None)
    if embed is not None:
        cos = (embed(direct) * embed(answers)).sum(-1)
        out["answer_shift_embedding"] = float(1 - cos.mean())
    return out, direct, r_direct


def evaluate(arm: Arm, prompts: list[str], reward: Reward, answer: Sampling, rewrite: Sampling,
             samples_per_prompt: int = 1, n_resamples: int = 2000, seed: int = 0,
             shift: bool = False) -> tuple[Metrics, list[Sample]]:
    """Per-response rewards of ``arm`` on ``prompts``; returns (summary, the scored samples)."""
    xs = [x for x in prompts for _ in range(samples_per_prompt)]
    rewrites = arm.prompter.rewrite(xs, rewrite, desc="eval: rewrite") if arm.prompter else list(xs)
    answers = arm.responder.answer(rewrites, answer, desc="eval: answer")
    rewards = reward.score(xs, answers)
    summary: Metrics = summarize(rewards, n_resamples=n_resamples, seed=seed)
    summary.update(method=arm.name, n_prompts=len(prompts), samples_per_prompt=samples_per_prompt)
    direct: list = [None] * len(xs)
    r_direct: list = [None] * len(xs)
    if shift and arm.prompter is not None:
        stats, direct, r_direct = answer_shift(arm, xs, answers, rewards, reward, answer)
        summary.update(stats)
    samples = [Sample(x, xp if arm.prompter else None, y, r, y_direct=yd, r_direct=rd)
               for x, xp, y, r, yd, rd in zip(xs, rewrites, answers, rewards, direct, r_direct, strict=True)]
    return summary, samples
