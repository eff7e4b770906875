"""The RL update: TRL's RLOO (default) or GRPO, configured so that its objective is eq. 9 with λ = ``lam``.

RLOO (D3) subtracts ``beta · Σ_t (log ρ(x′_t) − log ρ_ref(x′_t))`` from each rewrite's reward before the
leave-one-out baseline: a single-sample estimate of the sequence-level KL(ρ(·|x) ‖ ρ_ref(·|x)), so ``beta = λ``
makes the per-sample objective r(x, y) − λ·KL exactly the one of eq. 9 (and of Lemma 5.1's closed form).
GRPO puts a k3 per-token KL in the loss instead; with ``beta = λ`` and ``scale_rewards="none"`` it is the
closest match and is offered as an ablation. RLOO needs k ≥ 2 rewrites per prompt; the paper's PPO drew one.

LoRA (D7). A model config's ``lora`` key (``prompter.lora`` for Align-Pro, ``frozen.lora`` for the RLHF oracle) is
either ``null`` (full fine-tuning) or a dict turned into a ``peft.LoraConfig`` by :func:`lora_config` and handed to
the trainer as ``peft_config``. TRL then wraps the policy itself and keeps **no second copy as ρ_ref**: in TRL 1.16's
``RLOOTrainer.__init__`` the branch ``elif is_peft_model(model): self.ref_model = None`` ("the adapter can be
disabled to revert to the initial model"), and in ``_generate_and_score_completions`` the reference log-probs are
computed under ``use_adapter(model, adapter_name=None)``, i.e. ``model.disable_adapter()``: the base weights, which
are the untrained model (GRPOTrainer does the same). With a fresh adapter (B = 0) ρ_ref is therefore exactly the
model before training, as eq. 9 wants. Base weights stay frozen in their loaded dtype (bf16 on GPU); peft keeps the
adapter weights in fp32, so the optimizer's small steps at lr 1.41e-5 are not rounded away.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

TRAINERS = ("rloo", "grpo")


def kl_coefficient(lam: float) -> float:
    """λ of eq. 9 → TRL's ``beta``. The identity, because RLOO's penalty is already sequence-level (see above)."""
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam (the paper's λ) must be a finite number > 0, got {lam!r}")
    return float(lam)


class SequenceKL(TrainerCallback):
    """Adds ``kl_seq``: the mean over rewrites of Σ_t (log ρ − log ρ_ref), the single-sample estimate of
    KL(ρ(·|x) ‖ ρ_ref(·|x)) that λ weights in eq. 9. TRL logs ``kl`` as a per-token mean (Σ kl·mask / Σ mask);
    times ``completions/mean_length`` (Σ mask / n) it is exactly the per-sequence mean for a step (we log every
    step). Inserted before the W&B callback, so the value reaches W&B too (callbacks share the ``logs`` dict)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and isinstance(logs.get("kl"), (int, float)) and "completions/mean_length" in logs:
            logs["kl_seq"] = logs["kl"] * logs["completions/mean_length"]


class JsonlLog(TrainerCallback):
    """Appends every logged row (step, reward, kl_seq, lengths, …) to ``train_log.jsonl`` in the run dir as it is
    logged: the training curves without W&B, and kept if the run dies."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, **logs}, default=float) + "\n")


class RewardKLProgress(TrainerCallback):
    """One progress bar over optimizer steps, showing the latest reward and sequence KL (replaces HF's bar);
    ``show`` = (label, logged key) pairs."""

    def __init__(self, desc: str = "train", show: tuple = (("reward", "reward"), ("kl", "kl_seq"))):
        self.desc, self.show, self.bar = desc, show, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, desc=self.desc, dynamic_ncols=True)

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


# Defaults for keys a ``lora`` dict leaves out, so ``prompter.lora={r: 8}`` is enough on the command line.
# alpha = 2r (the common ratio; the adapter's scale alpha/r stays 2 whatever r); "all-linear" = every linear layer of
# the transformer blocks (attention and MLP), not the output head.
LORA_DEFAULTS: dict[str, Any] = {"r": 16, "alpha": None, "dropout": 0.05, "target_modules": "all-linear"}
LORA_KEYS = {"r": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "target_modules"}


def lora_config(lora) -> Any:
    """A model config's ``lora`` value → ``peft.LoraConfig`` for a causal LM, or ``None`` for full fine-tuning.

    ``lora`` is ``None``/``false`` (full fine-tuning) or a mapping with ``r``, ``alpha`` (default 2r), ``dropout``,
    ``target_modules`` (defaults in :data:`LORA_DEFAULTS`); any other key is passed to ``LoraConfig`` verbatim (e.g.
    ``use_rslora``, ``modules_to_save``)."""
    if lora is None or lora is False:
        return None
    from omegaconf import OmegaConf

    if OmegaConf.is_config(lora):
        lora = OmegaConf.to_container(lora, resolve=True)
    if not isinstance(lora, dict):
        raise ValueError(f"lora={lora!r} is invalid: null (full fine-tuning) or a mapping such as "
                         "{r: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}")
    opts = {**LORA_DEFAULTS, **lora}
    r, alpha, dropout = opts["r"], opts["alpha"], opts["dropout"]
    if not (isinstance(r, int) and not isinstance(r, bool) and r > 0):
        raise ValueError(f"lora.r={r!r} is invalid: the adapter rank must be an integer > 0 (e.g. 16)")
    alpha = 2 * r if alpha is None else alpha
    if not (isinstance(alpha, (int, float)) and alpha > 0):
        raise ValueError(f"lora.alpha={alpha!r} is invalid: must be > 0 (null = 2 * r)")
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"lora.dropout={dropout!r} is invalid: must be in [0, 1)")
    opts["alpha"] = alpha
    kwargs = {LORA_KEYS.get(k, k): v for k, v in opts.items()}
    try:
        from peft import LoraConfig
    except ImportError as err:  # a declared dependency; only a broken install gets here
        raise ImportError("LoRA (a `lora` config key) needs the `peft` package: pip install 'peft>=0.18'") from err
    try:
        return LoraConfig(task_type="CAUSAL_LM", **kwargs)
    except TypeError as err:
        raise ValueError(f"lora={lora!r}: {err}; valid keys: r, alpha, dropout, target_modules, or any "
                         "peft.LoraConfig field") from err


def quiet_library_noise() -> None:
    """Silence what transformers/TRL print that is not the user's business: per-file "Loading weights" bars (our
    own bars show the long work) and TRL 1.16 calling a transformers-5 deprecated alias once per step."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated", category=FutureWarning)


def trainer_args(cfg, *, lam: float, seed: int, output_dir: str, sampling, device: str, report_to: list[str]):
    """TRL config for the ``trainer`` group. ``sampling`` is the policy's rollout sampling (prompter or oracle)."""
    from trl import GRPOConfig, RLOOConfig

    if cfg.name not in TRAINERS:
        raise ValueError(f"trainer.name='{cfg.name}' is unknown; valid: {', '.join(TRAINERS)}")
    on_cpu = device == "cpu"
    common: dict[str, Any] = dict(
        output_dir=output_dir,
        beta=kl_coefficient(lam),
        num_generations=cfg.num_generations,
        # One optimizer step = prompts_per_step prompts × k rewrites, generated fresh for that step.
        per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
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
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_only_model=True,
        report_to=report_to,
        log_completions="wandb" in report_to,
        num_completions_to_print=0,  # samples go to samples.jsonl and W&B, not the console
        disable_tqdm=True,  # RewardKLProgress draws the bar
        use_cpu=on_cpu,
        bf16=not on_cpu and cfg.bf16,  # bf16 on CPU is ~6× slower (offline-assets.md)
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5 name of gradient checkpointing
        dataloader_num_workers=0,
    )
    if cfg.name == "grpo":
        common.update(scale_rewards="none", loss_type=cfg.get("loss_type", "dr_grpo"))
    common.update(dict(cfg.extra or {}))  # trainer.extra wins: any TRL option, verbatim
    return (GRPOConfig if cfg.name == "grpo" else RLOOConfig)(**common)


def build_trainer(cfg, *, model_path: str, model_dtype, train_rows: list[dict], reward_fn, args, callbacks,
                  lora=None):
    """Factory for the ``trainer`` group: ``train_rows`` carry ``prompt`` (conversation) and ``x`` (for the reward).
    ``lora`` is the trained model's ``lora`` config value (``None`` = full fine-tuning)."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer, RLOOTrainer

    args.model_init_kwargs = {"dtype": model_dtype}
    cls = GRPOTrainer if cfg.name == "grpo" else RLOOTrainer
    # The policy is passed as a path, not a live model: TRL then loads ρ_ref from the same path (full fine-tuning),
    # or wraps the policy in a fresh LoRA adapter and gets ρ_ref by disabling it (peft_config; see the docstring).
    trainer = cls(model=model_path, reward_funcs=reward_fn, args=args, train_dataset=Dataset.from_list(train_rows),
                  callbacks=callbacks, peft_config=lora_config(lora))
    trainer.remove_callback(PrinterCallback)  # logs go to W&B and the progress bar, not as dicts on stdout
    trainer.callback_handler.callbacks.insert(0, SequenceKL())  # first, so W&B and the bar see kl_seq
    return trainer
