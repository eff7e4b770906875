"""Sweep preflight: a ``--multirun`` composes and validates every job's config before the first job starts.

A sweep's jobs may run for hours each, one after another or on a cluster; a bad value in job 37 of 48 should not
surface after 36 jobs have trained. Hydra calls :class:`Preflight` (registered in ``conf/train.yaml`` under
``hydra.callbacks``) in the process that launches the sweep, before its sweeper creates the sweep dir: each job's
overrides are composed the way the launcher will compose them and checked by :func:`alignpro.config.validate`, which
imports no torch and loads nothing. Any bad job → every bad job listed (its number, which is its run dir's name,
its overrides, the message), exit code 2, and nothing runs.

Sweepers that choose their jobs as they go (Optuna) have no job list up front: the overrides they do not search are
checked, and each trial's sampled values are checked when its job starts.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from alignpro.config import validate
from alignpro.errors import BadInput, describe

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def job_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of each job the sweep will launch, in job-number order (Hydra's basic sweeper's product of
    the sweep's values); for another sweeper, one list: the overrides it does not search."""
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    sweeper = config.hydra.sweeper
    task = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    if sweeper._target_ != BASIC_SWEEPER:  # Optuna & co.: their `params` are a search space, not job values
        return [[o.input_line for o in parser.parse_overrides(task) if not o.is_sweep_override()]]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    parsed = parser.parse_overrides([*params, *task])
    return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


def job_problem(config: DictConfig, overrides: list[str]) -> str | None:
    """Why one job's config is bad (one line), or None: composed as the launcher will, then validated."""
    loader = GlobalHydra.instance().config_loader()
    try:
        job = loader.load_sweep_config(config, list(overrides))
        with open_dict(job):
            del job["hydra"]  # the job's own config is what alignpro.train validates
        validate(job)
    except (BadInput, HydraException, OmegaConfBaseException) as err:
        return describe(err)[1]  # the line the job itself would print (an unknown option: the valid ones)
    return None


class Preflight(Callback):
    """Hydra callback: refuse a multirun with any bad job before the first one starts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = job_overrides(config)
        bad = [(num, ov, msg) for num, ov in enumerate(jobs) if (msg := job_problem(config, ov)) is not None]
        if not bad:
            return
        lines = [f"alignpro: sweep preflight: {len(bad)} of {len(jobs)} jobs are invalid; no job was started"]
        lines += [f"  job {num} ({','.join(ov) or 'defaults'}): {msg}" for num, ov, msg in bad]
        print("\n".join(lines), file=sys.stderr, flush=True)
        raise SystemExit(2)
