"""The jobs of a command line: its overrides composed exactly as ``python -m alignpro.train --multirun <overrides>``
composes them (Hydra's sweeper, :mod:`alignpro.config.preflight`), each job's run dir and W&B group, every job validated
(:func:`alignpro.config.validate.validate`, torch-free) before any model is built, then one memory plan per distinct
arm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignpro import CONF_DIR
from alignpro.run.errors import BadInput, describe
from alignpro.tools.plan.memory import PROMPT_TOKENS, ArmPlan, plan_arm


@dataclass
class Job:
    """One job (or reused grid point) of the command."""

    job: int
    overrides: list[str]
    run_dir: str
    group: str
    runs: bool = True
    plan: ArmPlan | None = None


def compose_master(overrides: list[str]) -> Any:
    """The config ``python -m alignpro.train --multirun <overrides>`` starts from (its ``hydra`` block included)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import setup_globals
    from hydra.types import RunMode

    setup_globals()  # the ${now:...} resolver of the run and sweep dirs
    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="train")
    return GlobalHydra.instance().hydra.compose_config("train", overrides, run_mode=RunMode.MULTIRUN,
                                                       from_shell=True)


def grid(master: Any) -> tuple[list[tuple[int, list[str], bool]], dict[tuple, Any]]:
    """(job number, overrides, runs) per point of :func:`alignpro.config.preflight.grid_points` (a point that reuses
    another
    job's result does not run), and the job configs it composed on the way, by overrides (Hydra composition is most
    of a big grid's planning time, so each point is composed once)."""
    from alignpro.config.preflight import grid_points

    composed: dict[tuple, Any] = {}
    found = grid_points(master, composed)
    return [(p.job, list(p.overrides), bool(p.runs)) for p in found], composed


def _resolved(job_cfg: Any, key: str) -> str:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    HydraConfig.instance().set_config(job_cfg)  # for ${hydra:...} in a dir pattern
    return str(OmegaConf.select(job_cfg, key))


def list_jobs(overrides: list[str], multirun: bool = False) -> tuple[list[Job], dict[str, Any], dict]:
    """Every job of the command, composed and validated (one :class:`BadInput` naming each bad job); returns the
    jobs, each job's typed config by job number, and what describes the sweep."""
    from hydra.core.global_hydra import GlobalHydra

    try:
        return _list_jobs(compose_master(overrides), multirun)
    finally:
        GlobalHydra.instance().clear()  # left clear: an in-process caller (a test, a notebook) initialises its own


def _list_jobs(master: Any, multirun: bool) -> tuple[list[Job], dict[str, Any], dict]:
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict, read_write
    from omegaconf.errors import OmegaConfBaseException

    from alignpro.config import preflight as sweep
    from alignpro.config.validate import validate

    points, composed = grid(master)
    sweeper = master.hydra.sweeper
    task = list(OmegaConf.to_container(master.hydra.overrides.task, resolve=False))
    is_sweep = multirun or len(points) > 1 or bool(sweeper.get("params"))
    info = {"sweep": is_sweep, "sweeper": sweeper._target_,
            "searches": sweeper._target_ not in getattr(sweep, "PRODUCT_SWEEPERS", (sweep.BASIC_SWEEPER,)),
            "task": task, "n_trials": sweeper.get("n_trials", None)}
    # Resolved once on the sweep's own config, as Hydra's launcher does: every job shares one ${now:...}.
    sweep_dir = _resolved(master, "hydra.sweep.dir") if is_sweep else None
    jobs: list[Job] = []
    configs: dict[int, Any] = {}
    bad: list[str] = []
    for num, ovs, runs in points:
        with read_write(master.hydra.job), open_dict(master.hydra.job):
            master.hydra.job.num = master.hydra.job.id = num
        if is_sweep:
            run_dir = str(Path(sweep_dir) / _resolved(master, "hydra.sweep.subdir"))
            group = f"sweep-{Path(sweep_dir).name}"  # alignpro.train.run_context
        else:
            run_dir = _resolved(master, "hydra.run.dir")
            group = f"run-{Path(run_dir).name}"
        # Every point is checked, a reused one too (the sweep preflight refuses it: a report shows its config).
        try:
            job_cfg = composed.get(tuple(ovs)) or sweep.job_config(master, ovs)
            typed_cfg = validate(job_cfg)
            if runs:
                configs.setdefault(num, typed_cfg)
        except (BadInput, HydraException, OmegaConfBaseException) as err:
            bad.append(f"job {num} ({','.join(ovs) or 'defaults'}): {describe(err)[1]}")
            continue
        jobs.append(Job(num, list(ovs), run_dir, group, runs))
    if bad:
        raise BadInput(f"{len(bad)} of {len(points)} jobs are invalid, nothing was planned: " + "; ".join(bad))
    return jobs, configs, info


def plan(overrides: list[str], multirun: bool = False, prompt_tokens: int = PROMPT_TOKENS) -> dict:
    """Jobs, arm plans and sweep facts for a command line's overrides (validated before any model is built)."""
    jobs, configs, info = list_jobs(overrides, multirun)
    arms: dict[tuple, ArmPlan] = {}  # one per distinct memory plan (a λ or dataset sweep shares one)
    arm_jobs: dict[tuple, list[int]] = {}
    for job in jobs:
        if job.runs:
            job.plan = plan_arm(configs[job.job], prompt_tokens)
            arms.setdefault(job.plan.signature, job.plan)
            arm_jobs.setdefault(job.plan.signature, []).append(job.job)
    return {"jobs": jobs, "arms": arms, "arm_jobs": arm_jobs, "info": info, "prompt_tokens": prompt_tokens}
