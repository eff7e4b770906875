"""Held-out evaluation, the same for every method: answer each prompt, score r(x, y), summarise (D8, D10). The
answering and scoring are the chain x → x′ → y → r(x, y) that training runs too (alignpro/methods/rollout.py).

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

Edge counters (docs/faults.md): ``empty_rewrites`` (rewrites x′ that were empty, answered and scored like any
other), ``truncated_prompts`` (inputs of the first model, the prompter or π_F answering x, cut to fit its context)
and ``truncated_rewrites`` (x′ cut to fit π_F's context). A non-finite reward stops the evaluation before any mean,
variance or interval is computed: the offending samples go to ``run_dir/nonfinite_sample.json`` and
:class:`alignpro.run.errors.NonFiniteError` is raised, so no ``metrics.json`` is written.
"""

from __future__ import annotations

import random

from alignpro.config.schema import EvalConfig
from alignpro.methods.base import Arm
from alignpro.methods.rollout import Rollout, roll_out
from alignpro.models.reward import Reward
from alignpro.models.sampling import Sampling, cut_count
from alignpro.report.statistics import mean, summarize
from alignpro.run.directory import Metrics, RunDir, Sample
from alignpro.run.numerics import require_finite_rewards


def heldout_prompts(heldout: list[dict], eval_cfg: EvalConfig) -> list[str]:
    """The prompts every arm is evaluated on: the split's first ``n_prompts`` (``eval.prompt_sample: first``), or a
    draw seeded by ``eval.sample_seed`` (``seeded``), which a hub split stored in topic order cannot bias. Neither
    depends on the run's seed, so every arm and seed answers the same prompts and the reports can pair them."""
    rows = list(heldout)
    if eval_cfg.prompt_sample == "seeded":
        rows = random.Random(eval_cfg.sample_seed).sample(rows, min(eval_cfg.n_prompts, len(rows)))
    return [r["prompt"] for r in rows[: eval_cfg.n_prompts]]


def eval_samplings(eval_cfg: EvalConfig, answer_tokens: int, rewrite_tokens: int) -> tuple[Sampling, Sampling]:
    """(answer sampling, rewrite sampling) from the ``eval`` block."""
    answer = Sampling.from_config(eval_cfg.sampling, eval_cfg.max_new_tokens or answer_tokens)
    rewrite = Sampling.from_config(eval_cfg.rewrite_sampling or eval_cfg.sampling, rewrite_tokens)
    return answer, rewrite


def direct_answers(arm: Arm, xs: list[str], reward: Reward, answer: Sampling) -> Rollout:
    """π_F's answers to x itself and their rewards, for the answer shift (see the module docstring)."""
    return roll_out(xs, reward, responder=arm.responder, sampling=answer, desc="eval: answer x")


def answer_shift(direct: list[str], answers: list[str], rewards: list[float], r_direct: list[float],
                 reward: Reward) -> dict:
    """Theorem 6.1's second term, estimated from samples (see the module docstring): ``answer_shift_reward``,
    ``reward_mean_direct`` and, for a reward that embeds text, ``answer_shift_embedding``. Its rewards are finite:
    :func:`evaluate` checks them first."""
    out = {"answer_shift_reward": mean(r_direct) - mean(rewards), "reward_mean_direct": mean(r_direct)}
    embed = getattr(reward, "embed", None)
    if embed is not None:
        cos = (embed(direct) * embed(answers)).sum(-1)
        out["answer_shift_embedding"] = float(1 - cos.mean())
    return out


def evaluate(arm: Arm, prompts: list[str], reward: Reward, answer: Sampling, rewrite: Sampling,
             samples_per_prompt: int = 1, n_resamples: int = 2000, seed: int = 0,
             shift: bool = False, run_dir: RunDir | None = None,
             kinds: dict[str, str] | None = None) -> tuple[Metrics, list[Sample]]:
    """Per-response rewards of ``arm`` on ``prompts``; returns (summary, the scored samples, each with its prompt's
    kind where ``kinds`` maps x to one). ``run_dir`` is where a non-finite reward's samples are saved before
    :class:`alignpro.run.errors.NonFiniteError` is raised."""
    xs = [x for x in prompts for _ in range(samples_per_prompt)]
    if arm.roll_out is not None:  # the arm's own chain (best_of_n: N rewrites per x, the best answer kept)
        cuts = cut_count(arm.prompter)
        out = arm.roll_out(xs, reward, answer, rewrite)
        cut_prompts = cut_count(arm.prompter) - cuts
    elif arm.prompter is None:  # π_F answers x: it is the first model to read x
        out = roll_out(xs, reward, responder=arm.responder, sampling=answer, desc="eval: answer")
        cut_prompts = out.truncated
    else:  # the prompter reads x and writes x′, π_F answers x′
        cuts = cut_count(arm.prompter)
        rewrites = arm.prompter.rewrite(xs, rewrite, desc="eval: rewrite")
        cut_prompts = cut_count(arm.prompter) - cuts
        out = roll_out(xs, reward, x_prime=rewrites, responder=arm.responder, sampling=answer, desc="eval: answer")
    direct = direct_answers(arm, xs, reward, answer) if shift and arm.prompter is not None else None
    samples = out.samples(direct=direct, kinds=[kinds.get(x) for x in xs] if kinds else None)
    # Before any mean: a NaN would make every summary number NaN, an inf would make the mean and CI meaningless.
    require_finite_rewards(samples, where="the held-out evaluation", run_dir=run_dir,
                           consequence="no metrics were computed (no metrics.json)")
    summary: Metrics = summarize(out.r, n_resamples=n_resamples, seed=seed)
    summary.update(method=arm.name, n_prompts=len(prompts), samples_per_prompt=samples_per_prompt,
                   truncated_prompts=cut_prompts)
    if arm.prompter is not None:
        summary.update(empty_rewrites=out.empty_rewrites, truncated_rewrites=out.truncated)
    if direct is not None:
        summary.update(answer_shift(direct.y, out.y, out.r, direct.r, reward))
    return summary, samples
