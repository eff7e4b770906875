import math
import statistics

import pytest

from alignpro.report.statistics import bootstrap_ci, gap_closed, mean, sample_variance, summarize, win_tie_loss


def test_mean_and_sample_variance_match_statistics_module():
    xs = [0.3, -1.2, 2.5, 0.0, 1.1, 0.7]
    assert mean(xs) == pytest.approx(statistics.fmean(xs))
    assert sample_variance(xs) == pytest.approx(statistics.variance(xs))  # ddof = 1 (D10)


def test_variance_of_one_value_is_nan_and_empty_mean_raises():
    assert math.isnan(sample_variance([1.0]))
    with pytest.raises(ValueError):
        mean([])


def test_bootstrap_ci_brackets_the_mean_is_seeded_and_narrows_with_n():
    import random

    rng = random.Random(1)
    small = [rng.gauss(1.0, 1.0) for _ in range(20)]
    large = [rng.gauss(1.0, 1.0) for _ in range(400)]
    lo, hi = bootstrap_ci(small, seed=3)
    assert lo < mean(small) < hi
    assert bootstrap_ci(small, seed=3) == (lo, hi)
    lo2, hi2 = bootstrap_ci(large, seed=3)
    assert (hi2 - lo2) < (hi - lo) / 2
    assert lo2 < 1.0 < hi2  # covers the true mean


def test_bootstrap_rejects_bad_level():
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=1.5)


def test_summarize_reports_all_fields():
    s = summarize([1.0, 2.0, 3.0, 4.0], n_resamples=200)
    assert s["reward_mean"] == 2.5
    assert s["reward_var"] == pytest.approx(5 / 3)
    assert s["reward_ci_low"] <= 2.5 <= s["reward_ci_high"]
    assert s["n"] == 4 and s["ci_level"] == 0.95


def test_gap_closed_d11():
    assert gap_closed(alignpro=1.13, no_finetune=0.46, oracle=1.40) == pytest.approx(0.67 / 0.94)
    assert math.isnan(gap_closed(1.0, 0.5, 0.5))


def test_win_tie_loss_averages_both_orders():
    # consistent win, consistent loss, flips with the order (half win, half loss), consistent tie
    res = win_tie_loss([(1, 1), (-1, -1), (1, -1), (0, 0)], n_resamples=200)
    assert res["n_valid"] == 4 and res["n_invalid"] == 0
    assert res["win"] == pytest.approx(1.5 / 4)
    assert res["loss"] == pytest.approx(1.5 / 4)
    assert res["tie"] == pytest.approx(1 / 4)
    assert res["win"] + res["tie"] + res["loss"] == pytest.approx(1)
    assert res["position_consistency"] == pytest.approx(3 / 4)
    # Assistant 1 won in: (1,1) order 1; (-1,-1) order 2; (1,-1) both orders -> (0.5 + 0.5 + 1 + 0) / 4
    assert res["first_position_win"] == pytest.approx(0.5)
    lo, hi = res["win_ci"]
    assert 0 <= lo <= res["win"] <= hi <= 1


def test_win_tie_loss_counts_invalid_pairs_apart_from_ties():
    res = win_tie_loss([(1, 1), (None, 1), (None, None), (0, None)], n_resamples=100)
    assert (res["n_pairs"], res["n_valid"], res["n_invalid"], res["n_invalid_orders"]) == (4, 1, 3, 4)
    assert res["win"] == 1.0 and res["tie"] == 0.0
    empty = win_tie_loss([(None, None)])
    assert math.isnan(empty["win"]) and empty["n_invalid"] == 1


def test_position_bias_shows_in_first_position_win():
    # a judge that always prefers Assistant 1: A wins as Assistant 1, loses as Assistant 2
    res = win_tie_loss([(1, -1)] * 10, n_resamples=100)
    assert res["first_position_win"] == 1.0 and res["position_consistency"] == 0.0
    assert res["win"] == res["loss"] == 0.5
