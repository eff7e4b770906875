"""alignpro.run.numerics: what counts as finite, how a non-finite value is written, and the stop that saves it."""

import json
import math

import pytest

from alignpro.run.directory import RunDir, Sample
from alignpro.run.errors import NonFiniteError
from alignpro.run.numerics import is_finite, require_finite_rewards, shown


def test_finite_means_a_real_number_that_is_not_nan_or_inf():
    assert is_finite(1) and is_finite(0.5) and is_finite(-3.0)
    assert not any(is_finite(v) for v in (math.nan, math.inf, -math.inf, None, "1.0"))
    assert shown(math.nan) == "nan" and shown(-math.inf) == "-inf" and shown(2) == 2.0


def test_a_nan_reward_is_saved_as_strict_json_and_stops(tmp_path):
    files = RunDir(tmp_path)
    samples = [Sample("x0", "x0'", "y0", 0.5), Sample("x1", "x1'", "y1", math.nan)]
    with pytest.raises(NonFiniteError, match=r"reward=nan for 1 of 2 samples of step 3; nothing was trained"):
        require_finite_rewards(samples, where="step 3", consequence="nothing was trained", run_dir=files, step=3)
    record = json.loads(files.nonfinite.read_text())  # strict JSON: the NaN is written as text
    assert record["samples"] == [{**samples[1].row(), "index": 1, "r": "nan"}] and record["step"] == 3
    require_finite_rewards(samples[:1], where="step 4", consequence="-", run_dir=files)  # finite: no stop
