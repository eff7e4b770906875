"""One run directory: the name of every file a run writes, its one writer, and the records it holds.

    <run_dir>/
      config.yaml          the resolved, redacted config             alignpro.run.tracking.start
      run_info.json        git SHA, package versions, command line   alignpro.run.tracking.start
      wandb_id.txt         the W&B run's id (a resumed job reuses it) alignpro.run.tracking.start
      samples.jsonl        every scored training sample (Sample)     the method's reward function (SampleLog)
      train_log.jsonl      every logged training step                alignpro.methods.rl.StepLog
      checkpoints/         TRL checkpoints (trainer.save_steps)      TRL; deleted by alignpro.train when finished
        checkpoint-N/COMPLETE  the checkpoint is whole               alignpro.methods.rl.CheckpointComplete
      prompter/ | oracle/  the trained model, or its LoRA adapter    the method
      eval_samples.jsonl   held-out samples (Sample)                 alignpro.train
      metrics.json         the held-out summary (Metrics)            alignpro.train
      selection.json       fixed_instruction's menu scores          alignpro.methods.selection
      error.txt            why a job has no metrics.json             alignpro.train.main
      nonfinite_sample.json the NaN/inf that stopped the run         alignpro.run.numerics
      wandb/               the W&B run                               alignpro.run.tracking.Tracker (TRL reports nowhere)

Readers (the report, the comparison) go through :class:`RunDir` too, so a file's name lives in one place. Whole
files are written to a temporary name and renamed, so a reader never sees half of one; the append-only logs are
flushed row by row, so a run that dies keeps every finished step.

Resume (``resume=auto``): a job started again in its run dir continues from :meth:`RunDir.newest_checkpoint`, a
checkpoint whose ``COMPLETE`` marker exists (TRL writes a checkpoint's files one by one; a job killed meanwhile leaves
one without the marker, which is never picked), after :meth:`RunDir.rewind_logs` has cut the JSONL logs back to
that checkpoint's step, so each step is in them once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from alignpro.run.errors import BadInput


@dataclass(frozen=True)
class Sample:
    """One scored answer: prompt x, rewrite x′ (None when x is answered directly), answer y, reward r(x, y).

    Training samples carry the optimizer ``step``; held-out samples with ``eval.answer_shift`` also carry the answer
    to x itself (``y_direct``) and its reward (``r_direct``), and, where the dataset has kinds of prompts
    (``dataset=context``), x's ``kind``."""

    x: str
    x_prime: str | None
    y: str
    r: float
    step: int | None = None
    y_direct: str | None = None
    r_direct: float | None = None
    kind: str | None = None

    def row(self) -> dict[str, Any]:
        """The JSONL row: ``step`` first for training samples, the answer-shift fields only when measured."""
        out: dict[str, Any] = {"step": self.step} if self.step is not None else {}
        out.update(x=self.x, x_prime=self.x_prime, y=self.y, r=self.r)
        if self.y_direct is not None:
            out.update(y_direct=self.y_direct, r_direct=self.r_direct)
        if self.kind is not None:
            out["kind"] = self.kind
        return out

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Sample:
        return cls(row["x"], row.get("x_prime"), row["y"], row["r"], row.get("step"), row.get("y_direct"),
                   row.get("r_direct"), row.get("kind"))


class Metrics(TypedDict, total=False):
    """``metrics.json``: the held-out summary of one job (keys a reader may rely on)."""

    reward_mean: float  # mean r(x, y) over every held-out answer
    reward_var: float  # sample variance of the same rewards
    reward_ci_low: float  # bootstrap 95 % interval of the mean
    reward_ci_high: float
    n: int  # answers scored = n_prompts × samples_per_prompt
    method: str  # the arm (alignpro.methods.METHODS)
    n_prompts: int
    samples_per_prompt: int
    lam: float
    seed: int
    dataset: dict  # the data's provenance and drop counts (alignpro.data.preferences.Splits.info)
    reward_model: dict  # the reward model's own held-out checks
    menu_rate: float  # share of rewrites that are x + a menu instruction (sft=instructions)
    frozen_api: dict  # requests, retries and failures of a frozen model behind an API
    timing_s: dict  # seconds per stage, the job's total and per training step
    answer_shift_reward: float  # eval.answer_shift: Theorem 6.1's second term, estimated
    answer_shift_embedding: float
    reward_mean_direct: float
    empty_rewrites: int  # rewrites x′ that were empty (prompter arms; answered and scored like any other)
    truncated_prompts: int  # model inputs cut to fit the context: prompter inputs, or π_F's x without a prompter
    truncated_rewrites: int  # rewrites x′ cut to fit π_F's context (prompter arms)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; none when the file is absent (a run that never got that far)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _replace(path: Path, write: Callable[[Path], Any]) -> Path:
    """``write`` a temporary sibling of ``path`` (its folder made if needed), then rename it onto ``path``: readers
    see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone after a successful rename; removed after a failed write
    return path


def make_dir(path: Path, what: str, fix: str) -> Path:
    """Create a folder the user chose (the run dir, an ``--out``, the cache): the first place its path meets the disk,
    so a path that cannot be a folder (under a file, in /proc, read-only) is a BadInput naming it and ``fix`` (the
    setting that chose it), not the OSError of whatever wrote there next."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInput(f"{what} {path} cannot be created ({err.strerror or err}); {fix}") from None
    return path


RUN_DIR_FIX = "choose another with hydra.run.dir=... (hydra.sweep.dir=... for a sweep)"


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    return _replace(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_figure(fig: Any, path: Path, **savefig_kwargs: Any) -> Path:
    """A matplotlib figure saved like :func:`write_atomic` (the format is the suffix's, since the temporary name
    has another)."""
    return _replace(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix.lstrip("."), **savefig_kwargs))


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``: configs compared and tabulated key by key."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def world_size() -> int:
    """Processes of this job (``accelerate launch``/``torchrun`` set ``WORLD_SIZE``); 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's rank under ``accelerate launch``/``torchrun`` (``RANK``); 0 for a plain run."""
    return int(os.environ.get("RANK", "0"))


class SampleLog:
    """Append-only JSONL of scored samples, written as each step scores them (a crash keeps what was finished).
    ``path=None`` keeps nothing (a reward function used outside a run). With several processes each appends its own
    rows under a file lock, so rows never interleave (appends are not atomic on network filesystems)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None

    def write(self, samples: Iterable[Sample]) -> None:
        if self.path is None:
            return
        text = "".join(json.dumps(s.row(), ensure_ascii=False) + "\n" for s in samples)
        if world_size() > 1:
            from filelock import FileLock

            lock = FileLock(self.path.with_name(f".{self.path.name}.lock"))
        else:
            lock = nullcontext()
        with lock, self.path.open("a", encoding="utf-8") as f:
            f.write(text)


@dataclass(frozen=True)
class RunDir:
    """The files of one job's directory (see the module docstring for who writes each)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / "config.yaml")
    run_info = property(lambda self: self.root / "run_info.json")
    samples = property(lambda self: self.root / "samples.jsonl")
    train_log = property(lambda self: self.root / "train_log.jsonl")
    checkpoints = property(lambda self: self.root / "checkpoints")
    eval_samples = property(lambda self: self.root / "eval_samples.jsonl")
    metrics = property(lambda self: self.root / "metrics.json")
    selection = property(lambda self: self.root / "selection.json")
    error = property(lambda self: self.root / "error.txt")
    nonfinite = property(lambda self: self.root / "nonfinite_sample.json")
    wandb_id = property(lambda self: self.root / "wandb_id.txt")
    hydra_config = property(lambda self: self.root / ".hydra" / "config.yaml")
    hydra_overrides = property(lambda self: self.root / ".hydra" / "overrides.yaml")

    def model(self, policy: str) -> Path:
        """Where a trained policy is saved: ``prompter/`` (Align-Pro) or ``oracle/`` (the RLHF oracle)."""
        return self.root / policy

    def sample_log(self) -> SampleLog:
        return SampleLog(self.samples)

    # --- writers (each file above has exactly one caller of its writer) ---
    def write_json(self, path: Path, obj: Any) -> Path:
        return write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str))

    def write_eval_samples(self, samples: Iterable[Sample]) -> Path:
        lines = [json.dumps(s.row(), ensure_ascii=False, default=str) + "\n" for s in samples]
        return write_atomic(self.eval_samples, "".join(lines))

    def write_metrics(self, metrics: Metrics) -> Path:
        return self.write_json(self.metrics, metrics)

    def write_error(self, text: str) -> Path:
        return write_atomic(self.error, text)

    def clear_error(self) -> None:
        """A job started again drops the error of its failed attempt (written again if it fails again)."""
        self.error.unlink(missing_ok=True)

    def write_nonfinite(self, record: dict[str, Any]) -> Path:
        """What was NaN or infinite when the run stopped (alignpro/run/numerics.py): its samples, step and values."""
        return write_atomic(self.nonfinite, json.dumps(record, indent=2, ensure_ascii=False, default=str,
                                                       allow_nan=False))

    def write_wandb_id(self, run_id: str) -> Path:
        return write_atomic(self.wandb_id, run_id + "\n")

    def mark_checkpoint_complete(self, step: int) -> Path:
        """Called once TRL has written all of ``checkpoint-<step>``: from now on a resume may pick it."""
        return self.write_json(self.checkpoints / f"checkpoint-{step}" / "COMPLETE", {"step": step})

    def rewind_logs(self, step: int) -> None:
        """Cut the JSONL logs back to a checkpoint at ``step``: ``train_log.jsonl`` keeps the rows of steps 1..step
        but not the end-of-training summary (``train_runtime``), which the resumed training logs again;
        ``samples.jsonl`` the samples scored for them (a sample's ``step`` counts the steps done before it, 0..step-1).
        Rows of later steps are from the interrupted attempt; the resumed one writes them again."""
        keeps = ((self.train_log, lambda r: r["step"] <= step and "train_runtime" not in r),
                 (self.samples, lambda r: r["step"] < step))
        for path, keep in keeps:
            if path.exists():
                rows = [r for r in read_jsonl(path) if keep(r)]
                write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    # --- readers ---
    def is_finished(self) -> bool:
        return self.metrics.exists()

    def check_writable(self) -> None:
        """Refuse, before any model loads, a run dir that cannot take the job's files (a read-only mount, no
        space): one probe file written, synced and removed."""
        make_dir(self.root, "run dir", RUN_DIR_FIX)
        probe = self.root / f".write-check.{os.getpid()}"
        try:
            with probe.open("w") as f:
                f.write("ok")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise BadInput(f"run dir {self.root} cannot be written ({err.strerror or err}); {RUN_DIR_FIX}") from None
        finally:
            probe.unlink(missing_ok=True)

    def read_metrics(self) -> Metrics:
        return json.loads(self.metrics.read_text())

    def read_eval_samples(self) -> list[Sample]:
        return [Sample.from_row(row) for row in read_jsonl(self.eval_samples)]

    def read_samples(self) -> list[Sample]:
        """The training samples, every step's."""
        return [Sample.from_row(row) for row in read_jsonl(self.samples)]

    def read_selection(self) -> dict | None:
        """fixed_instruction's choice and its menu's train rewards; None for other arms."""
        return json.loads(self.selection.read_text()) if self.selection.exists() else None

    def read_train_log(self) -> list[dict]:
        return read_jsonl(self.train_log)

    def read_wandb_id(self) -> str | None:
        if not self.wandb_id.exists():
            return None
        return self.wandb_id.read_text().strip() or None

    def newest_checkpoint(self) -> tuple[int, Path] | None:
        """(step, folder) of the newest checkpoint TRL finished writing (its ``COMPLETE`` marker exists), or None."""
        done = [(int(m.group(1)), p) for p in self.checkpoints.glob("checkpoint-*")
                if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "COMPLETE").is_file()]
        return max(done) if done else None

    def was_started(self) -> bool:
        """A job ran here before: it wrote its resolved config (alignpro.run.tracking.start)."""
        return self.config.exists()

    def read_config(self) -> dict:
        """The job's resolved config: our redacted copy, else Hydra's (a job that failed before writing its own)."""
        import yaml

        path = self.config if self.config.exists() else self.hydra_config
        return yaml.safe_load(path.read_text()) or {}
