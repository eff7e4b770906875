"""The ``trainer`` group and a model's ``lora`` key turned into what TRL and peft take: TRL's RLOO/GRPO config
(:func:`trainer_args`), the optimizer-step budget (:func:`resolve_max_steps`), the check of ``trainer.extra``
(:func:`check_trainer_extra`), the ``peft.LoraConfig`` (:func:`lora_config`) and the trained weights' dtype
(:func:`training_dtype`).

Config validation and the plan tool call these before any model loads and must stay torch-free, so this module
imports no torch, transformers, peft or TRL at module level; each function imports what it needs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from alignpro.config.rules import lora_options
from alignpro.config.schema import PAPER_BUDGET, TrainerConfig
from alignpro.models.assets import resolve_dtype

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig
    from trl import GRPOConfig, RLOOConfig

    from alignpro.models.sampling import Sampling


LORA_KEYS = {"r": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "target_modules"}


def lora_config(lora: Any) -> LoraConfig | None:
    """A model config's ``lora`` value → ``peft.LoraConfig`` for a causal LM, or ``None`` for full fine-tuning.

    ``lora`` is ``None``/``false`` (full fine-tuning) or a mapping with ``r``, ``alpha`` (default 2r), ``dropout``,
    ``target_modules`` (defaults in :data:`alignpro.config.rules.LORA_DEFAULTS`, checked by
    :func:`alignpro.config.rules.lora_options`); any other key is passed to ``LoraConfig`` verbatim (e.g.
    ``use_rslora``, ``modules_to_save``). How TRL uses it: :mod:`alignpro.methods.rl`."""
    opts = lora_options(lora)
    if opts is None:
        return None
    from peft import LoraConfig

    try:
        return LoraConfig(task_type="CAUSAL_LM", **{LORA_KEYS.get(k, k): v for k, v in opts.items()})
    except TypeError as err:
        raise ValueError(f"lora={lora!r}: {err}; valid keys: r, alpha, dropout, target_modules, or any "
                         "peft.LoraConfig field") from err


def resolve_max_steps(cfg: TrainerConfig, n_train: int) -> int:
    """``trainer.max_steps: paper`` → optimizer steps of the paper's budget (docs/decisions.md, D12): legacy TRL
    PPO drew one rollout per train prompt in one pass, 128 per batch, and trained 4 epochs on each batch. Here a
    batch is ``prompts_per_step`` × k rollouts and each is trained ``num_iterations`` times, so the same number of
    rollouts is ⌈N / (prompts_per_step · k)⌉ batches and that times ``num_iterations`` optimizer steps. An integer
    passes through."""
    if cfg.max_steps != PAPER_BUDGET:
        return int(cfg.max_steps)
    batches = math.ceil(n_train / (cfg.prompts_per_step * cfg.num_generations))
    return max(batches, 1) * cfg.num_iterations


def check_trainer_extra(cfg: TrainerConfig) -> None:
    """``trainer.extra`` goes to TRL's config verbatim: a key that is not one of its fields (a typo) is refused here,
    before any model loads, instead of by TRL once the models have."""
    import dataclasses
    import difflib

    from trl import GRPOConfig, RLOOConfig

    from alignpro.config.rules import ConfigError

    cls = GRPOConfig if cfg.name == "grpo" else RLOOConfig
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(cfg.extra or {}):
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"trainer.extra.{key} is not an option of trl.{cls.__name__}; {hint}valid: any field of "
                              f"trl.{cls.__name__} (its docs list them)")


def trainer_args(cfg: TrainerConfig, *, beta: float, seed: int, output_dir: str, sampling: Sampling,
                 device: str) -> RLOOConfig | GRPOConfig:
    """TRL config for the ``trainer`` group. ``beta`` weighs the KL penalty (Align-Pro passes λ: see
    :mod:`alignpro.methods.rl`); ``sampling`` is the trained policy's rollout sampling (prompter or oracle)."""
    from trl import GRPOConfig, RLOOConfig

    on_cpu = device == "cpu"
    common: dict[str, Any] = dict(
        output_dir=output_dir,
        beta=float(beta),
        num_generations=cfg.num_generations,
        # One optimizer step = prompts_per_step prompts × k rewrites, generated together, in micro_batches passes
        # (TRL counts steps_per_generation in passes: one generation per optimizer step).
        per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations // cfg.micro_batches,
        gradient_accumulation_steps=cfg.micro_batches,
        steps_per_generation=cfg.micro_batches,
        num_iterations=cfg.num_iterations,  # each generated batch is trained on this many times (PPO's epochs)
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        max_completion_length=sampling.max_new_tokens,
        temperature=sampling.temperature,  # > 0: checked by config.validate (RL needs sampled rollouts)
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        seed=seed,
        data_seed=seed,
        logging_steps=1,
        # A checkpoint every save_steps and at the last step, with what a resume needs (optimizer, scheduler, RNG).
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 1,
        save_total_limit=cfg.save_total_limit,
        save_only_model=False,
        report_to=[],  # W&B is written by alignpro.run.tracking alone (StepLog, the samples table), not by TRL
        log_completions=False,
        num_completions_to_print=0,  # samples go to samples.jsonl and W&B, not the console
        disable_tqdm=True,  # RewardKLProgress draws the bar
        use_cpu=on_cpu,
        bf16=not on_cpu and cfg.bf16,  # bf16 on CPU is ~6× slower (docs/offline-assets.md §9)
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5 name of gradient checkpointing
        dataloader_num_workers=0,
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN (FiniteLogs stops the run), not averaged away
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_server_base_url=cfg.vllm_server_base_url,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
    )
    if cfg.name == "grpo":
        common.update(scale_rewards="none", loss_type=cfg.loss_type)
    common.update(dict(cfg.extra or {}))  # trainer.extra wins: any TRL option, verbatim
    return (GRPOConfig if cfg.name == "grpo" else RLOOConfig)(**common)


def training_dtype(dtype: str, device: str, lora: Any) -> torch.dtype:
    """The dtype the trained policy's weights are loaded in.

    With LoRA: the config's dtype (bf16 on GPU): the base weights are frozen and peft keeps the adapter in fp32.
    Full fine-tuning: always fp32 master weights, TRL's ``bf16=True`` autocasting the compute. Pure-bf16 weights
    would lose most updates: AdamW's step is about lr = 1.41e-5 per weight, below half of bf16's rounding step for
    any weight larger than about 0.004 in magnitude (measured: 10 AdamW steps on N(0, 0.02²) bf16 weights change
    15 % of them; in fp32, all). Memory for a full fine-tune: 16 bytes/parameter (weights, gradients, two Adam
    moments in fp32) plus the fp32 ρ_ref copy; see conf/prompter/qwen25_1_5b.yaml for the arithmetic."""
    import torch

    full_finetune = lora is None or lora is False  # as in lora_config; an empty {} is LoRA with defaults
    return torch.float32 if full_finetune else resolve_dtype(dtype, device)

