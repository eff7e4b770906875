"""Run bookkeeping in one place: the run dir's files and the W&B run's whole life (init → log → finish).

Every job writes, in its run dir: ``config.yaml`` (the *resolved* config; Hydra's own ``.hydra/config.yaml`` keeps
interpolations unresolved), ``run_info.json`` (git SHA, package versions, command line), and later the
artifacts of :mod:`alignpro.train`. The same config and run info go into ``wandb.config``.

W&B mode: ``logger.mode`` if set, else ``WANDB_MODE`` if set, else online when ``WANDB_API_KEY`` is set, else
offline. One W&B run per job, always finished (also on failure), so Hydra's in-process multirun gives one run per
job with its own config (docs/trl-conventions.md §10.2). Secrets are never written: they come from the
environment, and config keys that look like secrets are redacted before anything is saved.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from alignpro.run.directory import RunDir, write_atomic
from alignpro.run.secrets import redact, redact_overrides

if TYPE_CHECKING:
    from alignpro.config.schema import Config

log = logging.getLogger("alignpro")

PACKAGES = ("alignpro", "torch", "transformers", "trl", "datasets", "accelerate", "hydra-core", "omegaconf", "wandb")


def scrub_hydra_dir(run_dir: Path) -> None:
    """Redact secrets from the files Hydra wrote into ``run_dir/.hydra`` before our code ran: a ``key=value``
    typed on the command line lands verbatim in ``overrides.yaml`` and in ``hydra.yaml`` (task overrides,
    ``override_dirname``)."""
    import yaml

    hydra_dir = run_dir / ".hydra"
    for path in sorted(hydra_dir.glob("*.yaml")) if hydra_dir.is_dir() else []:
        text = path.read_text()
        clean = redact_overrides(text)
        if path.name == "config.yaml":
            data = yaml.safe_load(clean) or {}
            if redact(data) != data:
                clean = yaml.safe_dump(redact(data), sort_keys=False)
        if clean != text:
            write_atomic(path, clean)


def git_info(cwd: Path | None = None) -> dict:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def run_info() -> dict:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "git": git_info(Path(__file__).resolve().parent),
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "argv": sys.argv,
    }


def wandb_mode(configured: str | None = None) -> str | None:
    """The W&B mode: ``logger.mode`` when set, else auto (offline unless a key or ``WANDB_MODE`` says otherwise)."""
    if configured:
        return configured
    if os.environ.get("WANDB_MODE"):
        return None  # wandb reads it itself
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


@dataclass
class Tracker:
    """The job's W&B run, when enabled: the one object that writes to it (metrics, tables, the summary)."""

    run_dir: Path
    run: Any = None
    summary: dict = field(default_factory=dict)

    @property
    def offline(self) -> bool:
        """The W&B run lives in local files only (``wandb sync`` uploads it later)."""
        return self.run is not None and self.run.settings.mode == "offline"

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def table(self, name: str, rows: list[dict]) -> None:
        if self.run is not None and rows:
            import wandb

            cols = list(rows[0])
            self.run.log({name: wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in rows])})

    def artifact(self, folder: Path, name: str, kind: str, metadata: dict) -> None:
        """``folder``'s files as a W&B artifact of type ``kind`` (offline: recorded in the run's files, uploaded by
        ``wandb sync``)."""
        if self.run is not None:
            import wandb

            art = wandb.Artifact(name, type=kind, metadata=metadata)
            art.add_dir(str(folder))
            self.run.log_artifact(art)

    def set_summary(self, metrics: dict) -> None:
        self.summary.update(metrics)
        if self.run is not None:
            self.run.summary.update(metrics)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(exit_code=1 if exc_type else 0)


def resolved(cfg: Config) -> dict:
    """The config as a job's ``config.yaml`` and ``wandb.config`` hold it: interpolations resolved, secrets redacted."""
    return redact(OmegaConf.to_container(cfg, resolve=True))


def start(cfg: Config, run_dir: Path | RunDir, *, group: str, name: str, job_type: str) -> Tracker:
    """Write the run's config and info, then open the W&B run (factory for the ``logger`` group)."""
    files = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    config = resolved(cfg)
    write_atomic(files.config, OmegaConf.to_yaml(OmegaConf.create(config)))
    info = run_info()
    write_atomic(files.run_info, json.dumps(info, indent=2))
    tracker = Tracker(files.root)
    lg = cfg.logger
    if lg.backend == "wandb":
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        # One W&B run per job, also across restarts: its id is kept in the job dir and a resumed job continues it.
        run_id = files.read_wandb_id() or uuid.uuid4().hex[:12]
        files.write_wandb_id(run_id)
        tracker.run = wandb.init(
            project=lg.project, entity=lg.entity, group=lg.group or group, name=name,
            job_type=job_type, tags=list(lg.tags), dir=str(files.root), mode=wandb_mode(lg.mode),
            config={**config, "run_info": info}, reinit="finish_previous", id=run_id, resume="allow",
        )
        # Training curves are drawn against the optimizer step, which a resumed job continues from its checkpoint.
        tracker.run.define_metric("train/*", step_metric="train/global_step")
        if tracker.run.settings.mode == "offline":
            offline_dir = Path(tracker.run.dir).parent  # run.dir is its files/ subfolder
            log.info("W&B offline run: %s (upload later with: wandb sync %s)", offline_dir, offline_dir)
        else:
            log.info("W&B run: %s", tracker.run.url)
    return tracker
