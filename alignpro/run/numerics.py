"""A NaN or infinite reward, log-probability or loss stops the run (docs/faults.md).

Why it must be checked by us: TRL 1.16 reads a NaN reward as "unscorable" (its advantage is zeroed and it is left
out of the logged mean), and both TRL and transformers drop NaN values from the metrics they log, so a run would
go on and report clean-looking numbers. Instead, the first non-finite value stops the run with
:class:`alignpro.run.errors.NonFiniteError` (exit code 1), before it is trained on or averaged into a metric, and what
produced it is written to ``run_dir/nonfinite_sample.json`` (:meth:`alignpro.run.directory.RunDir.nonfinite`, written
only through :func:`stop` here). The checks themselves sit where the values are made: the reward functions
(alignpro/methods/), the held-out evaluation (alignpro/report/evaluate.py) and the trainer's log-prob passes and logged
rows (alignpro/methods/rl/).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NoReturn

from alignpro.run.directory import RunDir, Sample
from alignpro.run.errors import NonFiniteError


def is_finite(value: Any) -> bool:
    """A real number that is neither NaN nor ±inf (numpy and 0-d torch scalars count; None and text do not)."""
    if value is None or isinstance(value, (str, bytes)):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def shown(value: Any) -> Any:
    """``value`` for a JSON file: a finite number as it is, anything else as its text (``"nan"``, ``"inf"``,
    ``"None"``), so the file stays strict JSON."""
    return float(value) if is_finite(value) else str(value)


def stop(run_dir: RunDir | None, record: dict[str, Any], message: str, write: bool = True) -> NoReturn:
    """Save ``record`` (what was non-finite, the step, the samples) to the run dir and raise; the error's one line
    is ``message`` and where the record went. ``write=False``: another process of the job saves the same record."""
    if run_dir is None:
        where = "not saved: no run dir"
    elif write:
        where = f"saved to {run_dir.write_nonfinite(record)}"
    else:
        where = f"saved by process 0 to {run_dir.nonfinite}"
    raise NonFiniteError(f"{message}; {where}")


def training_step(trainer_state: Any) -> tuple[int | None, str]:
    """(samples.jsonl's step: optimizer steps done before, the label of the step being made) for a message."""
    if trainer_state is None:
        return None, "outside training"
    done = trainer_state.global_step
    total = f"/{trainer_state.max_steps}" if getattr(trainer_state, "max_steps", 0) else ""
    return done, f"training step {done + 1}{total}"


def require_finite_rewards(samples: Sequence[Sample], *, where: str, consequence: str,
                           run_dir: RunDir | None, step: int | None = None) -> None:
    """Stop when any sample's reward (or, with ``eval.answer_shift``, its direct answer's reward) is not finite.

    ``where`` names the batch in the message ("training step 3/10 (alignpro reward)", "the held-out evaluation"),
    ``consequence`` says what did not happen ("nothing was trained on them"). Only the offending samples are
    saved, each with its index in the batch."""
    bad = [i for i, s in enumerate(samples)
           if not is_finite(s.r) or (s.r_direct is not None and not is_finite(s.r_direct))]
    if not bad:
        return
    first = samples[bad[0]]
    value = first.r if not is_finite(first.r) else first.r_direct
    rows = []
    for i in bad:
        row = samples[i].row()
        row.update(index=i, r=shown(row["r"]))
        if "r_direct" in row:
            row["r_direct"] = shown(row["r_direct"])
        rows.append(row)
    record = {"what": "reward", "value": shown(value), "where": where, "step": step, "n_samples": len(samples),
              "samples": rows}
    stop(run_dir, record, f"reward={value} for {len(bad)} of {len(samples)} samples of {where}; {consequence}")
