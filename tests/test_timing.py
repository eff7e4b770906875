import time

from alignpro.run.timing import StageTimer


def test_stage_timer_sums_seconds_and_counts_calls_per_stage():
    t = StageTimer()
    for _ in range(2):
        with t("sleep"):
            time.sleep(0.02)
    f = t.wrap("add", lambda a: a + 1)
    assert f(1) == 2
    assert t.calls == {"sleep": 2, "add": 1}
    assert t.seconds["sleep"] >= 0.04 and t.seconds["add"] < t.seconds["sleep"]


def test_stage_timer_counts_a_stage_that_raised():
    t = StageTimer()
    try:
        with t("fails"):
            raise RuntimeError
    except RuntimeError:
        pass
    assert t.calls["fails"] == 1
