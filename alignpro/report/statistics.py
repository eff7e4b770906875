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


def paired_difference(a: Sequence[float], b: Sequence[float], n_resamples: int = 2000, level: float = 0.95,
                      seed: int = 0) -> dict:
    """Mean of a − b over *paired* observations (the same prompt answered by two arms) with a percentile-bootstrap
    interval that resamples pairs, not each side on its own. Pairing removes the between-prompt variance that both
    arms share, so the interval is much tighter than the gap between two unpaired intervals."""
    if len(a) != len(b):
        raise ValueError(f"paired_difference needs pairs: got {len(a)} and {len(b)} values")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    lo, hi = bootstrap_ci(diffs, mean, n_resamples, level, seed)
    return {"diff_mean": mean(diffs), "diff_ci_low": lo, "diff_ci_high": hi, "ci_level": level, "n_pairs": len(diffs),
            "share_a_better": mean([float(d > 0) for d in diffs])}


def gap_closed(alignpro: float, no_finetune: float, oracle: float) -> float:
    """D11: (Align-Pro − no FT) / (oracle − no FT); the paper's figures give ≈ 0.67 on average."""
    gap = oracle - no_finetune
    return float("nan") if gap == 0 else (alignpro - no_finetune) / gap


# ---- pairwise judge verdicts (D9) ----------------------------------------------------------------------------------
Outcome = int | None  # +1: A better, 0: tie, −1: B better, None: the judge's answer could not be parsed


def _share(verdicts: Sequence[tuple[int, int]], value: int) -> list[float]:
    """Per pair, the fraction of its two orders whose outcome is ``value`` (0, 0.5 or 1)."""
    return [((ab == value) + (ba == value)) / 2 for ab, ba in verdicts]


def win_tie_loss(outcomes: Sequence[tuple[Outcome, Outcome]], n_resamples: int = 2000, level: float = 0.95,
                 seed: int = 0) -> dict:
    """Win / tie / loss rates of A against B from pairs judged in both orders (D9).

    ``outcomes[i] = (A as Assistant 1, A as Assistant 2)``, both already from A's point of view. Each pair's two
    verdicts are averaged, so a pair that flips with the order counts half win, half loss. A pair with an
    unparseable verdict in either order is invalid: reported in ``n_invalid``, never scored as a tie. CIs are
    percentile bootstraps over pairs. ``position_consistency`` is the share of valid pairs whose verdict does not
    change with the order; ``first_position_win`` is how often Assistant 1 wins (0.5 ± ties = no position bias).
    """
    valid = [(ab, ba) for ab, ba in outcomes if ab is not None and ba is not None]
    out: dict = {"n_pairs": len(outcomes), "n_valid": len(valid), "n_invalid": len(outcomes) - len(valid),
                 "n_invalid_orders": sum((ab is None) + (ba is None) for ab, ba in outcomes), "ci_level": level}
    if not valid:
        nan = float("nan")
        out.update({k: nan for k in ("win", "tie", "loss", "position_consistency", "first_position_win")})
        out.update({f"{k}_ci": (nan, nan) for k in ("win", "tie", "loss")})
        return out
    for name, value in (("win", 1), ("tie", 0), ("loss", -1)):
        shares = _share(valid, value)
        out[name] = mean(shares)
        out[f"{name}_ci"] = bootstrap_ci(shares, mean, n_resamples, level, seed)
    out["position_consistency"] = mean([float(ab == ba) for ab, ba in valid])
    # Assistant 1 is A in the first order and B in the second: A wins there (+1) / B wins there (−1 from A's view).
    out["first_position_win"] = mean([((ab == 1) + (ba == -1)) / 2 for ab, ba in valid])
    return out
