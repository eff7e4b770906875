"""The TrainerCallbacks every RL (and SFT) run hangs on TRL's trainer: the per-step log (``train_log.jsonl`` and
W&B), the progress bar, the checkpoint-complete marker and the stop at a non-finite logged value; and
:func:`completion_text`, which reads TRL's completions. Callbacks are the public extension point of transformers'
Trainer, so nothing here touches TRL's internals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm
from transformers import TrainerCallback

from alignpro.run.directory import RunDir, read_jsonl
from alignpro.run.numerics import is_finite, shown, stop

if TYPE_CHECKING:
    from alignpro.run.tracking import Tracker


def completion_text(completion) -> str:
    """TRL hands conversational completions as ``[{"role": "assistant", "content": ...}]``; plain ones as str."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion if m.get("role") == "assistant")


class StepLog(TrainerCallback):
    """Every logged training row (step, reward, kl_seq, objective, lengths, …), as it is logged: appended to
    ``train_log.jsonl`` (the curves without W&B, kept if the run dies) and sent to W&B as ``train/<key>`` through
    the run's one :class:`alignpro.run.tracking.Tracker` (TRL itself reports to nothing)."""

    def __init__(self, path: str | Path, tracker: Tracker | None = None):
        self.path, self.tracker = Path(path), tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:  # logs are already averaged over processes
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, **logs}, default=float) + "\n")
        self.send(state.global_step, logs)

    def send(self, step: int, logs: dict) -> None:
        """One row to W&B, its curves keyed by ``train/global_step``."""
        if self.tracker is not None:
            scalars = {f"train/{k}": v for k, v in logs.items() if isinstance(v, (int, float))}
            self.tracker.log({**scalars, "train/global_step": step})

    def replay(self) -> None:
        """A resumed job's rows up to its checkpoint, sent again: an offline W&B run cannot be appended to (a new
        attempt starts a new offline file with the same id, and what the killed attempt had not flushed is lost),
        so the resumed attempt's file holds the whole curve. An online run keeps its rows on the server instead."""
        if self.tracker is not None and self.tracker.offline:
            for row in read_jsonl(self.path):
                self.send(row["step"], {k: v for k, v in row.items() if k != "step"})


class RewardKLProgress(TrainerCallback):
    """One progress bar over optimizer steps, showing the latest reward, sequence KL and eq. 9's objective
    (replaces HF's bar); ``show`` = (label, logged key) pairs."""

    def __init__(self, desc: str = "train",
                 show: tuple = (("reward", "reward"), ("kl", "kl_seq"), ("objective", "objective"))):
        self.desc, self.show, self.bar = desc, show, None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.desc, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs:
            shown = {name: logs[k] for name, k in self.show if isinstance(logs.get(k), (int, float))}
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()}, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


class CheckpointComplete(TrainerCallback):
    """Marks a checkpoint whole once TRL has written all of it (``on_save`` runs after the save and the rotation of
    older checkpoints), so a resume never picks one a kill cut short (``RunDir.newest_checkpoint``)."""

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.run_dir.mark_checkpoint_complete(state.global_step)


# Logged values made from the log-probs, their gradients or the rewards. TRL and transformers drop NaN values from
# what they log (a mean over none is logged as None, and with ``logging_nan_inf_filter`` a NaN loss is replaced
# by the running average), so a None here is a NaN too.
FINITE_KEYS = ("loss", "grad_norm", "kl", "entropy", "reward")


class FiniteLogs(TrainerCallback):
    """Stops the run at a logged row whose loss, gradient norm, KL, entropy or reward is not finite. It runs first
    of all callbacks, so the row never reaches ``train_log.jsonl``, W&B or the bar; logging comes before saving
    in transformers' loop, so the step is not checkpointed either. The step's samples are already in
    ``samples.jsonl``; they are copied into ``nonfinite_sample.json`` with the row."""

    def __init__(self, run_dir: RunDir | None = None):
        self.run_dir = run_dir

    def on_log(self, args, state, control, logs=None, **kwargs):
        # fp16's loss scaler (trainer.extra={fp16: true}) logs an inf gradient norm when it rightly skips a step
        keys = [k for k in FINITE_KEYS if not (k == "grad_norm" and getattr(args, "fp16", False))]
        bad = [k for k in keys if logs and k in logs and not is_finite(logs[k])]
        if not bad:
            return
        step = state.global_step
        samples = [r for r in read_jsonl(self.run_dir.samples) if r.get("step") == step - 1] if self.run_dir else []
        record = {"what": bad[0], "value": shown(logs[bad[0]]), "step": step,
                  "logs": {k: shown(v) if isinstance(v, (int, float)) or v is None else v for k, v in logs.items()},
                  "samples": [{**r, "r": shown(r.get("r"))} for r in samples]}
        # The logged row is the same on every process (already averaged): every process stops, one writes.
        stop(self.run_dir, record, f"{bad[0]}={logs[bad[0]]} logged at training step {step}; the run stopped before "
                                   f"checkpointing it; the step's samples are in samples.jsonl (step {step - 1})",
             write=state.is_world_process_zero)
