"""The inner expectation of eq. 9, as the reward callable the RL trainer sees.

For each prompt x of a step the trainer has already sampled k rewrites x′ ~ ρ(·|x) (its "completions"). Here:

    y ~ π_F(·|x′)          the frozen model answers the rewrite alone (eq. 3: it never sees x)
    r = r(x, y)            the reward judges the answer against the *original* prompt (eqs. 6–9; D5)

and r goes back to the trainer, which subtracts λ·KL(ρ‖ρ_ref) and takes the policy-gradient step. The RLHF oracle
uses :class:`OracleEpisode`: its completions already are answers y to x. Every (x, x′, y, r) is appended to
``samples.jsonl`` in the run dir and shown in the trainer's W&B completions table.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from alignpro.frozen import Frozen
from alignpro.prompter import compose_rewrite
from alignpro.reward import Reward

REWARD_PROMPTS = ("original", "rewritten")


class StageTimer:
    """Wall-clock seconds per pipeline stage, summed over the run (for the per-step time breakdown)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start
            self.calls[stage] += 1

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            with self(stage):
                return fn(*args, **kwargs)

        return timed


class SampleLog:
    """Append-only JSONL of every scored sample; flushed per step so a crash keeps what was finished."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None

    def write(self, rows: list[dict]) -> None:
        if self.path is None:
            return
        with self.path.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def completion_text(completion) -> str:
    """TRL hands conversational completions as ``[{"role": "assistant", "content": ...}]``; plain ones as str."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion if m.get("role") == "assistant")


class AlignProEpisode:
    """Reward callable for the prompter: x′ (given) → y = π_F(x′) → r(x, y). Dataset column ``x`` holds x."""

    __name__ = "alignpro"  # TRL names the reward column after the callable

    def __init__(self, frozen: Frozen, reward: Reward, reward_prompt: str = "original",
                 samples: SampleLog | None = None, timer: StageTimer | None = None, rewrite: str = "full"):
        if reward_prompt not in REWARD_PROMPTS:
            raise ValueError(f"reward.prompt='{reward_prompt}' is unknown; valid: {', '.join(REWARD_PROMPTS)}")
        self.frozen, self.reward, self.reward_prompt, self.rewrite = frozen, reward, reward_prompt, rewrite
        self.samples = samples or SampleLog(None)
        self.timer = timer or StageTimer()

    def __call__(self, prompts, completions, x, trainer_state=None, log_extra=None, log_metric=None,
                 **_) -> list[float]:
        # x′: the completion itself, or x followed by it (prompter.rewrite=append)
        rewrites = [compose_rewrite(xi, completion_text(c), self.rewrite) for xi, c in zip(x, completions, strict=True)]
        with self.timer("frozen_generation"):
            answers = self.frozen.answer(rewrites)
        judged = list(x) if self.reward_prompt == "original" else rewrites  # D5: r(x, y) unless ablating
        with self.timer("reward"):
            rewards = self.reward.score(judged, answers)
        step = trainer_state.global_step if trainer_state is not None else None
        self.samples.write([{"step": step, "x": xi, "x_prime": xp, "y": yi, "r": ri}
                            for xi, xp, yi, ri in zip(x, rewrites, answers, rewards, strict=True)])
        if log_extra is not None:  # extra columns in TRL's W&B completions table
            log_extra("x", list(x))
            log_extra("y", answers)
        if log_metric is not None:
            log_metric("rewrite_chars", sum(map(len, rewrites)) / len(rewrites))
            log_metric("answer_chars", sum(map(len, answers)) / len(answers))
        return rewards


class OracleEpisode:
    """Reward callable for the RLHF oracle: the policy *is* the frozen model, its completion is y; r = r(x, y)."""

    __name__ = "oracle"

    def __init__(self, reward: Reward, samples: SampleLog | None = None, timer: StageTimer | None = None):
        self.reward = reward
        self.samples = samples or SampleLog(None)
        self.timer = timer or StageTimer()

    def __call__(self, prompts, completions, x, trainer_state=None, log_extra=None, **_) -> list[float]:
        answers = [completion_text(c) for c in completions]
        with self.timer("reward"):
            rewards = self.reward.score(list(x), answers)
        step = trainer_state.global_step if trainer_state is not None else None
        self.samples.write([{"step": step, "x": xi, "x_prime": None, "y": yi, "r": ri}
                            for xi, yi, ri in zip(x, answers, rewards, strict=True)])
        if log_extra is not None:
            log_extra("x", list(x))
        return rewards
