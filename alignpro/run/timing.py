"""Wall-clock seconds per pipeline stage, summed over a run (the per-step time breakdown in ``metrics.json``)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StageTimer:
    """``with timer("reward"): ...`` adds the block's seconds to ``seconds["reward"]``; ``wrap`` times a function."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start
            self.calls[stage] += 1

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            with self(stage):
                return fn(*args, **kwargs)

        return timed
