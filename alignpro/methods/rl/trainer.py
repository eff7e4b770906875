"""TRL's RLOO/GRPO trainer for one trained policy, built (:func:`build_trainer`) and trained to ``max_steps`` or
resumed (:func:`fit`); and :func:`quiet_library_noise`, what transformers/TRL print that is not the user's business.

Every private TRL attribute used here goes through :mod:`alignpro.methods.rl.trl_internals`, checked against the
installed TRL when a trainer is built.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from alignpro.config.schema import Config, TrainerConfig
from alignpro.methods.rl import trl_internals
from alignpro.methods.rl.callbacks import CheckpointComplete, FiniteLogs, RewardKLProgress, StepLog
from alignpro.methods.rl.guards import fit_policy_prompts, guard_log_probs
from alignpro.methods.rl.options import lora_config, trainer_args, training_dtype
from alignpro.run.directory import RunDir, read_jsonl
from alignpro.run.timing import StageTimer

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import torch
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from alignpro.models.sampling import Sampling
    from alignpro.run.tracking import Tracker

log = logging.getLogger("alignpro")


def build_trainer(cfg: TrainerConfig, *, model_path: str, model_dtype: torch.dtype, train_rows: list[dict],
                  reward_fn: Callable, args: RLOOConfig | GRPOConfig, callbacks: Sequence[TrainerCallback],
                  lora: Any = None, first_callbacks: Sequence[TrainerCallback] = (),
                  run_dir: RunDir | None = None) -> RLOOTrainer | GRPOTrainer:
    """Factory for the ``trainer`` group: ``train_rows`` carry ``prompt`` (conversation) and ``x`` (for the reward).
    ``lora`` is the trained model's ``lora`` config value (``None`` = full fine-tuning). ``first_callbacks`` run
    before every other callback (after :class:`FiniteLogs`), so what they add to a step's logs reaches W&B, the
    JSONL log and the bar. Policy prompts are cut to the context and log-probs checked
    (:mod:`alignpro.methods.rl.guards`); ``run_dir`` is where a non-finite value's samples are saved. The installed
    TRL is checked first for every private attribute those guards and :func:`fit` use."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer, RLOOTrainer

    trl_internals.check_trl_internals()
    args.model_init_kwargs = {"dtype": model_dtype}
    cls = GRPOTrainer if cfg.name == "grpo" else RLOOTrainer
    # The policy is passed as a path, not a live model: TRL then loads ρ_ref from the same path (full fine-tuning),
    # or wraps the policy in a fresh LoRA adapter and gets ρ_ref by disabling it (peft_config; alignpro.methods.rl).
    trainer = cls(model=model_path, reward_funcs=reward_fn, args=args, train_dataset=Dataset.from_list(train_rows),
                  callbacks=callbacks, peft_config=lora_config(lora))
    trainer.remove_callback(PrinterCallback)  # logs go to W&B and the progress bar, not as dicts on stdout
    trainer.callback_handler.callbacks[:0] = [FiniteLogs(run_dir), *first_callbacks]
    guard_log_probs(trainer, run_dir)
    fit_policy_prompts(trainer, args.max_completion_length)
    return trainer


def fit(cfg: Config, *, beta: float, policy_path: str, rows: list[dict], reward_fn: Callable, sampling: Sampling,
        dtype: str, run_dir: RunDir, device: str, timer: StageTimer, label: str, tracker: Tracker | None = None,
        lora: Any = None, first_callbacks: Sequence[TrainerCallback] = (),
        callbacks: Sequence[TrainerCallback] = ()) -> RLOOTrainer | GRPOTrainer:
    """Build the ``trainer`` group's TRL trainer for one policy, train it to ``max_steps``, return it. Every step's
    logs go to ``train_log.jsonl``, a progress bar and, with a ``tracker``, W&B. With ``resume=auto`` and a complete
    checkpoint in the run dir, training continues from it (weights, optimizer, scheduler, RNG, data position)."""
    args = trainer_args(cfg.trainer, beta=beta, seed=cfg.seed, output_dir=str(run_dir.checkpoints),
                        sampling=sampling, device=device)
    step_log = StepLog(run_dir.train_log, tracker)
    trainer = build_trainer(cfg.trainer, model_path=policy_path, model_dtype=training_dtype(dtype, device, lora),
                            train_rows=rows, reward_fn=reward_fn, args=args,
                            callbacks=[RewardKLProgress(label), step_log, CheckpointComplete(run_dir), *callbacks],
                            lora=lora, first_callbacks=first_callbacks, run_dir=run_dir)
    resume = run_dir.newest_checkpoint() if cfg.resume == "auto" else None
    trained = resume is not None and resume[0] >= cfg.trainer.max_steps  # the job died after training
    if trainer.accelerator.is_main_process:
        if resume is None:
            run_dir.rewind_logs(0)  # an attempt killed before its first checkpoint: its rows are redone from step 1
        else:
            log.info("resuming from %s (step %d of %d)", resume[1], resume[0], cfg.trainer.max_steps)
            if not trained:
                run_dir.rewind_logs(resume[0])
            step_log.replay()
    trainer.accelerator.wait_for_everyone()  # no process appends a sample before the logs are rewound
    # Time the policy's own sampling (the rest of a step is log-prob passes, the reward function and the update).
    trl_internals.wrap_generate(trainer, lambda generate: timer.wrap("policy_generation", generate))
    with timer("train_total"):
        if trained:  # only the weights are needed: transformers' loop would run one step before checking max_steps
            trl_internals.load_checkpoint(trainer, str(resume[1]))
        else:
            trainer.train(resume_from_checkpoint=str(resume[1]) if resume else None)
    if tracker is not None:  # every scored training sample, one W&B table (the rows of samples.jsonl)
        tracker.table("train/samples", read_jsonl(run_dir.samples))
    return trainer


def quiet_library_noise() -> None:
    """Silence what transformers/TRL print that is not the user's business: per-file "Loading weights" bars (our
    own bars show the long work), TRL 1.16 calling a transformers-5 deprecated alias once per step, and, on resume,
    the trainer's "missing keys ['lm_head.weight']" of a model whose output head is tied to its input embeddings
    (SmolLM2, the tiny models): the checkpoint leaves the tied copy out, and loading the embeddings fills the one
    shared tensor (tests/test_resume.py checks that a resumed run equals an uninterrupted one)."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated", category=FutureWarning)
    trainer_log = logging.getLogger("transformers.trainer")
    if not any(isinstance(f, _TiedHeadNotMissing) for f in trainer_log.filters):
        trainer_log.addFilter(_TiedHeadNotMissing())


class _TiedHeadNotMissing:
    """Drops the resume warning about a tied output head (see :func:`quiet_library_noise`); any other key is kept."""

    def filter(self, record) -> bool:
        return "missing keys in the checkpoint model loaded: ['lm_head.weight']" not in record.getMessage()
