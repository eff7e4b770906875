"""A finished job's record: the held-out summary (alignpro/report/evaluate.py) completed with the run's own facts
into ``metrics.json``, next to ``eval_samples.jsonl``, and the same numbers, flat, in W&B.

Keys added to the evaluation's summary, in this order: ``lam``, ``seed``, ``dataset`` (the split's counts),
``reward_model`` (its accuracies, whether it was cached), ``menu_rate`` (a prompter arm with an instruction menu: the
share of rewrites that were x + a menu instruction), ``frozen_api`` (π_F behind an API: its requests, retries and
failures) and ``timing_s`` (seconds per pipeline stage, the job's total and, for a trained arm, per optimizer step).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from alignpro.methods.sft import menu_rate
from alignpro.run.directory import Metrics, RunDir, Sample

if TYPE_CHECKING:
    from alignpro.config.schema import Config
    from alignpro.methods.base import Arm
    from alignpro.models.frozen import Responder
    from alignpro.run.timing import StageTimer
    from alignpro.run.tracking import Tracker


def complete_metrics(summary: Metrics, cfg: Config, arm: Arm, samples: list[Sample], *, dataset: dict,
                     reward_model: dict, frozen: Responder | None, timer: StageTimer, started: float) -> Metrics:
    """``summary`` with the job's facts added (see the module docstring); ``started`` is the job's
    ``time.perf_counter()`` at its start."""
    summary.update(lam=cfg.lam, seed=cfg.seed, dataset=dataset, reward_model=reward_model, **arm.facts)
    menu = cfg.sft.instructions
    if arm.prompter is not None and menu:  # how often the prompter wrote x + a menu instruction
        summary["menu_rate"] = menu_rate([s.x for s in samples], [s.x_prime for s in samples], list(menu))
    client = getattr(frozen, "client", None)
    if client is not None:  # a frozen model behind an API: its requests, retries and failures, counted
        summary["frozen_api"] = client.stats.as_dict()
    summary["timing_s"] = {k: round(v, 3) for k, v in timer.seconds.items()}
    summary["timing_s"]["job_total"] = round(time.perf_counter() - started, 3)
    if cfg.method.trains:
        summary["timing_s"]["per_step"] = round(timer.seconds["train_total"] / cfg.trainer.max_steps, 3)
    return summary


def wandb_metrics(summary: Metrics) -> dict:
    """The summary's numbers under W&B's names: ``eval/…``, ``frozen_api/…``, ``time/…``."""
    flat = {f"eval/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}
    flat.update({f"frozen_api/{k}": v for k, v in summary.get("frozen_api", {}).items()})
    flat.update({f"time/{k}": v for k, v in summary["timing_s"].items()})
    return flat


def record(files: RunDir, tracker: Tracker, summary: Metrics, samples: list[Sample]) -> None:
    """``eval_samples.jsonl`` and ``metrics.json`` (written last: it marks the job finished), then W&B: the samples
    as the ``eval/samples`` table, the numbers as a logged row and as the run's summary."""
    files.write_eval_samples(samples)
    files.write_metrics(summary)
    tracker.table("eval/samples", [s.row() for s in samples])
    flat = wandb_metrics(summary)
    tracker.log(flat)
    tracker.set_summary(flat)
