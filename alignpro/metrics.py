"""Pure statistics of evaluation rewards (D10, D11). Imports nothing from alignpro and nothing heavy."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of an empty sequence")
    return math.fsum(values) / len(values)


def sample_variance(values: Sequence[float]) -> float:
    """Unbiased (ddof = 1) variance of per-response rewards pooled over the evaluation prompts (D10)."""
    if len(values) < 2:
        return float("nan")
    m = mean(values)
    return math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)


def bootstrap_ci(
    values: Sequence[float],
    stat: Callable[[Sequence[float]], float] = mean,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` (resampling responses with replacement, seeded)."""
    if not values:
        raise ValueError("bootstrap of an empty sequence")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = random.Random(seed)
    n = len(values)
    stats = sorted(stat([values[rng.randrange(n)] for _ in range(n)]) for _ in range(n_resamples))
    lo = stats[int(math.floor((1 - level) / 2 * (n_resamples - 1)))]
    hi = stats[int(math.ceil((1 + level) / 2 * (n_resamples - 1)))]
    return lo, hi


def summarize(values: Sequence[float], n_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean, sample variance and bootstrap CI of the mean: the numbers every evaluation reports."""
    lo, hi = bootstrap_ci(values, mean, n_resamples, level, seed)
    var = sample_variance(values)
    return {
        "reward_mean": mean(values),
        "reward_var": var,
        "reward_std": math.sqrt(var) if var == var else float("nan"),
        "reward_ci_low": lo,
        "reward_ci_high": hi,
        "ci_level": level,
        "n": len(values),
    }


def gap_closed(alignpro: float, no_finetune: float, oracle: float) -> float:
    """D11: (Align-Pro − no FT) / (oracle − no FT); the paper's figures give ≈ 0.67 on average."""
    gap = oracle - no_finetune
    return float("nan") if gap == 0 else (alignpro - no_finetune) / gap
