"""Hydra's basic sweeper (the product of the sweep's values, in batches), launching each distinct job once. Which grid
points are the same job is decided by :func:`alignpro.config.preflight.grid_points`; this class only hands the launcher
the
distinct ones and writes ``grid.json`` beside their run dirs. alignpro's sweep preflight
(alignpro.config.preflight.Preflight)
puts it in place of the basic sweeper for every product sweep; ``hydra/sweeper=distinct`` names it explicitly.
Hydra loads sweepers only from the ``hydra_plugins`` package, hence this thin module."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


@dataclass
class DistinctSweeperConf:
    _target_: str = "hydra_plugins.alignpro_sweeper.distinct_sweeper.DistinctSweeper"
    max_batch_size: Any = None  # jobs per launch batch; None = all at once (Hydra's basic sweeper's key)
    params: Any = None  # {key: "v1,v2"}: the sweep's values, as for the basic sweeper


ConfigStore.instance().store(group="hydra/sweeper", name="distinct", node=DistinctSweeperConf, provider="alignpro")


class DistinctSweeper(BasicSweeper):
    def split_arguments(self, overrides: Any, max_batch_size: int | None) -> list[list[list[str]]]:  # type: ignore[override]
        from alignpro.config.preflight import grid_points, write_grid

        points = grid_points(self.config)
        write_grid(Path(self.config.hydra.sweep.dir), points)
        jobs = [p.overrides for p in points if p.runs]
        size = max_batch_size or len(jobs) or 1
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]
