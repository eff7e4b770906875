"""Sweep preflight: a ``--multirun`` composes and validates every job's config before the first job starts.

A sweep's jobs may run for hours each, one after another or on a cluster; a bad value in job 37 of 48 should not
surface after 36 jobs have trained. Hydra calls :class:`Preflight` (registered in ``conf/train.yaml`` under
``hydra.callbacks``) in the process that launches the sweep, before its sweeper creates the sweep dir: each job's
overrides are composed the way the launcher will compose them and checked by :func:`alignpro.config.validate.validate`,
which
imports no torch and loads nothing. Any bad job → every bad job listed (its number, which is its run dir's name,
its overrides, the message), exit code 2, and nothing runs.

Sweepers that choose their jobs as they go (Optuna) have no job list up front: the overrides they do not search are
checked, and each trial's sampled values are checked when its job starts.

A product sweep runs each distinct job once (:func:`grid_points`, Hydra's ``distinct`` sweeper in
``hydra_plugins/alignpro_sweeper``): an arm does not read every config group (``no_finetune`` and ``rlhf`` never load
the prompter; arms that train nothing ignore ``trainer`` and λ), so the grid points that differ only there are one
job. ``experiment=paper/grid`` is 36 jobs, not 48: the no-fine-tuning and oracle arms of a (frozen, dataset) pair
run once for both prompters. The sweep dir's ``grid.json`` maps every point to the job that runs it, and the reports
read each reused point's own config with that job's results (alignpro/report/runs.py).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from alignpro.config.validate import validate
from alignpro.run.directory import flatten, write_atomic
from alignpro.run.errors import BadInput, describe

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
DISTINCT_SWEEPER = "hydra_plugins.alignpro_sweeper.distinct_sweeper.DistinctSweeper"
PRODUCT_SWEEPERS = (BASIC_SWEEPER, DISTINCT_SWEEPER)  # their jobs are the product of the sweep's values
GRID_FILE = "grid.json"


def job_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of each job the sweep will launch, in job-number order (Hydra's basic sweeper's product of
    the sweep's values); for another sweeper, one list: the overrides it does not search."""
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    sweeper = config.hydra.sweeper
    task = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    if sweeper._target_ not in PRODUCT_SWEEPERS:  # Optuna & co.: their `params` are a search space, not job values
        return [[o.input_line for o in parser.parse_overrides(task) if not o.is_sweep_override()]]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    parsed = parser.parse_overrides([*params, *task])
    return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


def job_config(config: DictConfig, overrides: list[str]) -> DictConfig:
    """One job's own config, composed as the launcher will compose it (without its ``hydra`` block)."""
    job = GlobalHydra.instance().config_loader().load_sweep_config(config, list(overrides))
    with open_dict(job):
        del job["hydra"]  # the job's own config is what alignpro.train validates
    return job


def job_problem(config: DictConfig, overrides: list[str], job: DictConfig | None = None) -> str | None:
    """Why one job's config is bad (one line), or None: composed as the launcher will (or ``job``, already
    composed), then validated."""
    try:
        validate(job if job is not None else job_config(config, overrides))
    except (BadInput, HydraException, OmegaConfBaseException) as err:
        return describe(err)[1]  # the line the job itself would print (an unknown option: the valid ones)
    return None


def unread_groups(method: Any) -> tuple[str, ...]:
    """The config keys an arm never reads: the prompter's (``prompter``, ``sft``) for an arm without one, the
    training budget (``trainer``, ``lam``) for an arm that trains nothing (its ``conf/method`` facts)."""
    if not OmegaConf.is_config(method) or "uses_prompter" not in method or "trains" not in method:
        return ()
    unread = () if method.uses_prompter else ("prompter",) if method.get("reads_menu") else ("prompter", "sft")
    return unread + (() if method.trains else ("trainer", "lam"))


def job_identity(job: DictConfig) -> str:
    """What decides a job's result: its config without the keys its arm never reads (interpolations as written)."""
    tree = OmegaConf.to_container(job, resolve=False)
    for key in unread_groups(OmegaConf.select(job, "method")):
        tree.pop(key, None)
    return json.dumps(tree, sort_keys=True, default=str)


@dataclass
class GridPoint:
    """One point of a sweep's product: ``job`` is the number (the run dir's name) of the job that runs it. With
    ``runs`` false the point is reused from that job, and its own config is that job's ``config.yaml`` with the keys
    in ``differs`` set (flattened, e.g. ``prompter.name``) and those in ``drops`` removed: what a report shows for
    it. Only keys the two composed configs disagree on are listed, so values the job resolved when it ran (such as
    ``trainer.max_steps: paper``) come from the job."""

    overrides: list[str]
    job: int
    runs: bool = True
    differs: dict = field(default_factory=dict)
    drops: list[str] = field(default_factory=list)


def grid_points(config: DictConfig, composed: dict | None = None) -> list[GridPoint]:
    """Every point of the sweep in Hydra's order and the job that runs it: points whose jobs would compute the same
    thing (:func:`job_identity`) share the first one's job; jobs are numbered in order of first appearance. A point
    whose config does not compose is a job of its own (the preflight refuses it). Only the ``distinct`` sweeper
    shares jobs (the preflight swaps it in for the basic one); for Hydra's basic sweeper every point is a job.
    ``composed``, if given, receives each point's composed config by its overrides (the plan reuses them)."""
    points: list[GridPoint] = []
    jobs: dict[str, tuple[int, DictConfig]] = {}  # identity -> (job number, its config)
    share = config.hydra.sweeper._target_ in PRODUCT_SWEEPERS  # the preflight runs a basic sweep as distinct
    for overrides in job_overrides(config):
        try:
            job = job_config(config, overrides) if share else None
            key = job_identity(job) if job is not None else None
            if composed is not None and job is not None:
                composed[tuple(overrides)] = job
        except (HydraException, OmegaConfBaseException):
            job, key = None, None
        if key is not None and key in jobs:
            number, ran = jobs[key]
            mine, theirs = flat_config(job), flat_config(ran)
            points.append(GridPoint(overrides, number, runs=False,
                                    differs={k: v for k, v in mine.items() if theirs.get(k, _ABSENT) != v},
                                    drops=sorted(theirs.keys() - mine.keys())))
            continue
        number = len({p.job for p in points})
        if key is not None:
            jobs[key] = (number, job)
        points.append(GridPoint(overrides, number))
    return points


_ABSENT = object()


def flat_config(job: DictConfig) -> dict:
    """A job's config as it writes it to ``config.yaml`` (alignpro.run.tracking.resolved), flattened; {} for a config
    the preflight will refuse."""
    from alignpro.run.tracking import resolved

    try:
        return flatten(resolved(validate(job)))
    except (BadInput, OmegaConfBaseException):
        return {}


def write_grid(sweep_dir: str | Path, points: list[GridPoint]) -> None:
    """``grid.json`` in the sweep dir: every point, the job that runs it, and how a reused point's config differs."""
    path = Path(sweep_dir) / GRID_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"points": [asdict(p) for p in points]}, indent=1, default=str))


def launcher_problem(config: DictConfig) -> str | None:
    """Why the sweep's launcher cannot start here (one line), or None. ``launcher=slurm`` submits with ``sbatch``:
    off a cluster, submitit would only fail after its setup ("Could not detect srun")."""
    target = str(config.hydra.launcher.get("_target_", ""))
    if target.endswith(".SlurmLauncher") and shutil.which("sbatch") is None:
        return ("launcher=slurm is invalid here: SLURM's sbatch is not on this machine's PATH; start the sweep on the "
                "cluster's login node, or list its jobs without launching: python -m alignpro.tools.plan <the same "
                "overrides>")
    return None


class Preflight(Callback):
    """Hydra callback: refuse a multirun with any bad job before the first one starts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.sweeper._target_ == BASIC_SWEEPER:
            # Hydra instantiates the sweeper from this same config right after its callbacks: a product sweep is
            # run by the distinct sweeper (same product, each distinct job once). Set here rather than in
            # conf/train.yaml because Hydra keeps the first override of a group: a primary-config override of
            # hydra/sweeper would stop experiment=search/lam from choosing Optuna.
            with open_dict(config):
                config.hydra.sweeper._target_ = DISTINCT_SWEEPER
        if (problem := launcher_problem(config)) is not None:
            print(f"alignpro: sweep preflight: {problem}", file=sys.stderr, flush=True)
            raise SystemExit(2)
        composed: dict = {}
        jobs = grid_points(config, composed)  # a reused point is checked too: a report shows its own config
        bad = [(p.job, p.overrides, msg) for p in jobs
               if (msg := job_problem(config, p.overrides, composed.get(tuple(p.overrides)))) is not None]
        if not bad:
            return
        lines = [f"alignpro: sweep preflight: {len(bad)} of {len(jobs)} jobs are invalid; no job was started"]
        lines += [f"  job {num} ({','.join(ov) or 'defaults'}): {msg}" for num, ov, msg in bad]
        print("\n".join(lines), file=sys.stderr, flush=True)
        raise SystemExit(2)
