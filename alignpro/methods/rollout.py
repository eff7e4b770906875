"""The chain every arm is scored through, in training, evaluation and the lever probe:

    x  →  x′  →  y ~ π(·|x′)  →  r(x, y)  →  samples

* x′ is written before the chain starts: TRL's sampled completion (Align-Pro, ``prompter.rewrite`` applied), a
  prompter's evaluation rewrite, or x + an instruction (the lever); with no rewrite π answers x itself.
* π sees x′ and nothing else (eq. 3): π_F, or the trained oracle at evaluation. The oracle's own training rollouts
  arrive as answers already written (y is TRL's completion to x), so no model is called.
* r judges y against the *original* x (D5); ``judge="rewritten"`` scores r(x′, y) instead, an ablation.

:func:`roll_out` runs one batch and returns a :class:`Rollout`; :class:`TrainingReward` is what TRL's reward
functions share around it (samples.jsonl, the optimizer step, the finite-reward check), so the Align-Pro and oracle
rewards are each a few lines (alignpro/methods/alignpro.py, alignpro/methods/oracle.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alignpro.config.schema import REWARD_PROMPTS
from alignpro.models.sampling import cut_count
from alignpro.run.directory import RunDir, Sample, SampleLog
from alignpro.run.numerics import require_finite_rewards, training_step
from alignpro.run.timing import StageTimer

if TYPE_CHECKING:
    from alignpro.models.frozen import Responder
    from alignpro.models.reward import Reward
    from alignpro.models.sampling import Sampling


@dataclass
class Rollout:
    """One batch of the chain: prompts x, rewrites x′ (None: x was answered as it is), answers y, rewards r(x, y),
    and how many of the responder's inputs were cut to fit its context on the way."""

    x: list[str]
    x_prime: list[str] | None
    y: list[str]
    r: list[float]
    truncated: int = 0

    @property
    def asked(self) -> list[str]:
        """What the responder answered: x′, or x itself."""
        return self.x if self.x_prime is None else self.x_prime

    @property
    def empty_rewrites(self) -> int:
        """Rewrites that were empty (answered and scored like any other); 0 without rewrites."""
        return sum(not xp.strip() for xp in self.x_prime or [])

    def samples(self, step: int | None = None, direct: Rollout | None = None,
                kinds: list[str | None] | None = None) -> list[Sample]:
        """The batch as :class:`Sample` rows; ``direct`` (the same x answered without rewrite) adds the answer-shift
        fields ``y_direct``, ``r_direct``; ``kinds`` each x's kind of prompt (dataset=context)."""
        none = [None] * len(self.x)
        xps = self.x_prime if self.x_prime is not None else none
        yds, rds = (direct.y, direct.r) if direct is not None else (none, none)
        return [Sample(x, xp, y, r, step, yd, rd, k)
                for x, xp, y, r, yd, rd, k in zip(self.x, xps, self.y, self.r, yds, rds, kinds or none, strict=True)]


def roll_out(x: list[str], reward: Reward, *, x_prime: list[str] | None = None, responder: Responder | None = None,
             y: list[str] | None = None, sampling: Sampling | None = None, desc: str | None = None,
             judge: str = "original", timer: StageTimer | None = None) -> Rollout:
    """x → x′ → y → r for one batch: ``responder`` answers x′ (x when ``x_prime`` is None) with ``sampling`` (None:
    its own) in one call, unless the answers ``y`` are given; then ``reward`` scores them in one call, against x
    (``judge`` = reward.prompt: ``original``) or x′ (``rewritten``). ``timer`` adds the two stages to
    ``frozen_generation`` and ``reward``."""
    if (responder is None) == (y is None):
        raise ValueError("roll_out needs a responder to answer x′ or the answers y, not both")
    if judge not in REWARD_PROMPTS:
        raise ValueError(f"judge='{judge}' is unknown; valid: {', '.join(REWARD_PROMPTS)}")
    timer = timer or StageTimer()
    asked = x if x_prime is None else x_prime
    cuts_before = cut_count(responder)
    if y is None:
        with timer("frozen_generation"):
            y = responder.answer(asked, sampling, desc)  # eq. 3: π sees x′ only
    judged = list(x) if judge == "original" else asked  # D5: r(x, y) unless ablating
    with timer("reward"):
        r = reward.score(judged, y)
    return Rollout(list(x), x_prime, y, r, cut_count(responder) - cuts_before)


class TrainingReward:
    """What TRL's reward functions share: each batch's rows, with the optimizer step, go to ``samples.jsonl`` (and,
    after training, to W&B as ``train/samples``); a non-finite reward stops the run before TRL sees it
    (alignpro/run/numerics.py): TRL would zero the sample's advantage and leave it out of the logged mean.
    A subclass turns TRL's call into a :func:`roll_out` and hands the result to :meth:`keep`."""

    __name__ = "reward"  # TRL names the reward column after the function; the error message names it too

    def __init__(self, reward: Reward, samples: SampleLog | None = None, timer: StageTimer | None = None,
                 run_dir: RunDir | None = None):
        self.reward = reward
        self.samples = samples or SampleLog(None)
        self.timer = timer or StageTimer()
        self.run_dir = run_dir  # where a non-finite reward's samples are saved

    def keep(self, out: Rollout, trainer_state: Any = None, kinds: list[str | None] | None = None) -> list[float]:
        """Check the batch's rewards, append its rows (with each x's kind, where the data has kinds: the report's
        per-kind training panel) to the sample log, and return the rewards for TRL."""
        step, label = training_step(trainer_state)
        samples = out.samples(step, kinds=kinds)
        require_finite_rewards(samples, where=f"{label} (the {self.__name__} reward)", run_dir=self.run_dir, step=step,
                               consequence="the run stopped before training on them")
        self.samples.write(samples)
        return out.r
