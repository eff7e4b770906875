"""The RL plumbing both trained arms share (Align-Pro's prompter, the oracle's frozen model): TRL's RLOO (D3,
default) or GRPO, its config from the ``trainer`` group, LoRA, the per-step logs. The objective itself, eq. 9 with
β = λ, is written out in alignpro/methods/alignpro.py. GRPO puts a k3 per-token KL in the loss instead of RLOO's
sequence-level penalty in the reward; with ``beta = λ`` and ``scale_rewards="none"`` it is the closest match and is
offered as an ablation. RLOO needs k ≥ 2 rewrites per prompt; the paper's PPO drew one.

LoRA (D7). A model config's ``lora`` key (``prompter.lora`` for Align-Pro, ``frozen.lora`` for the RLHF oracle) is
either ``null`` (full fine-tuning) or a dict turned into a ``peft.LoraConfig`` by :func:`lora_config` and handed to
the trainer as ``peft_config``. TRL then wraps the policy itself and keeps **no second copy as ρ_ref**: in TRL 1.16's
``RLOOTrainer.__init__`` the branch ``elif is_peft_model(model): self.ref_model = None`` ("the adapter can be
disabled to revert to the initial model"), and in ``_generate_and_score_completions`` the reference log-probs are
computed under ``use_adapter(model, adapter_name=None)``, i.e. ``model.disable_adapter()``: the base weights, which
are the untrained model (GRPOTrainer does the same). With a fresh adapter (B = 0) ρ_ref is therefore exactly the
model before training, as eq. 9 wants. Base weights stay frozen in their loaded dtype (bf16 on GPU); peft keeps the
adapter weights in fp32, so the optimizer's small steps at lr 1.41e-5 are not rounded away.

The trained model is saved (``run_dir/prompter`` or ``run_dir/oracle``) before evaluation: full weights, or with
LoRA only the adapter (``adapter_config.json`` + ``adapter_model.safetensors``, which name the base model) plus the
tokenizer; :func:`alignpro.assets.load_causal_lm` loads either kind of folder. Evaluation uses the trained model as
it is in memory; a LoRA model keeps its adapter **unmerged**: ``merge_and_unload`` would add ΔW = (α/r)·B·A into
bf16 base weights, whose rounding error (up to 2⁻⁸ ≈ 0.4 % of each weight) is of the order of ΔW itself after a
short run at lr 1.41e-5 (about 1 % of a weight), so the merged model would not be the trained one; the unmerged
adapter costs two rank-r matmuls per linear layer, small beside the layer's own matmul at r = 16.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

from alignpro.assets import resolve_dtype
from alignpro.rundir import RunDir, read_jsonl
from alignpro.schema import Config, TrainerConfig, lora_options
from alignpro.timing import StageTimer

if TYPE_CHECKING:
    import torch

    from alignpro.tracking import Tracker

def completion_text(completion) -> str:
    """TRL hands conversational completions as ``[{"role": "assistant", "content": ...}]``; plain ones as str."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion if m.get("role") == "assistant")


class StepLog(TrainerCallback):
    """Every logged training row (step, reward, kl_seq, objective, lengths, …), as it is logged: appended to
    ``train_log.jsonl`` (the curves without W&B, kept if the run dies) and sent to W&B as ``train/<key>`` through
    the run's one :class:`alignpro.tracking.Tracker` (TRL itself reports to nothing)."""

    def __init__(self, path: str | Path, tracker: Tracker | None = None):
        self.path, self.tracker = Path(path), tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, **logs}, default=float) + "\n")
        if self.tracker is not None:
            scalars = {f"train/{k}": v for k, v in logs.items() if isinstance(v, (int, float))}
            self.tracker.log({**scalars, "train/global_step": state.global_step})


class RewardKLProgress(TrainerCallback):
    """One progress bar over optimizer steps, showing the latest reward, sequence KL and eq. 9's objective
    (replaces HF's bar); ``show`` = (label, logged key) pairs."""

    def __init__(self, desc: str = "train",
                 show: tuple = (("reward", "reward"), ("kl", "kl_seq"), ("objective", "objective"))):
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


LORA_KEYS = {"r": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "target_modules"}


def lora_config(lora) -> Any:
    """A model config's ``lora`` value → ``peft.LoraConfig`` for a causal LM, or ``None`` for full fine-tuning.

    ``lora`` is ``None``/``false`` (full fine-tuning) or a mapping with ``r``, ``alpha`` (default 2r), ``dropout``,
    ``target_modules`` (defaults in :data:`alignpro.schema.LORA_DEFAULTS`, checked by
    :func:`alignpro.schema.lora_options`); any other key is passed to ``LoraConfig`` verbatim (e.g. ``use_rslora``,
    ``modules_to_save``)."""
    opts = lora_options(lora)
    if opts is None:
        return None
    from peft import LoraConfig

    try:
        return LoraConfig(task_type="CAUSAL_LM", **{LORA_KEYS.get(k, k): v for k, v in opts.items()})
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


def trainer_args(cfg: TrainerConfig, *, beta: float, seed: int, output_dir: str, sampling, device: str):
    """TRL config for the ``trainer`` group. ``beta`` weighs the KL penalty (Align-Pro passes λ: see the module
    docstring); ``sampling`` is the trained policy's rollout sampling (prompter or oracle)."""
    from trl import GRPOConfig, RLOOConfig

    on_cpu = device == "cpu"
    common: dict[str, Any] = dict(
        output_dir=output_dir,
        beta=float(beta),
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
        report_to=[],  # W&B is written by alignpro.tracking alone (StepLog, the samples table), not by TRL
        log_completions=False,
        num_completions_to_print=0,  # samples go to samples.jsonl and W&B, not the console
        disable_tqdm=True,  # RewardKLProgress draws the bar
        use_cpu=on_cpu,
        bf16=not on_cpu and cfg.bf16,  # bf16 on CPU is ~6× slower (docs/offline-assets.md §9)
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5 name of gradient checkpointing
        dataloader_num_workers=0,
    )
    if cfg.name == "grpo":
        common.update(scale_rewards="none", loss_type=cfg.loss_type)
    common.update(dict(cfg.extra or {}))  # trainer.extra wins: any TRL option, verbatim
    return (GRPOConfig if cfg.name == "grpo" else RLOOConfig)(**common)


def build_trainer(cfg: TrainerConfig, *, model_path: str, model_dtype, train_rows: list[dict], reward_fn, args,
                  callbacks, lora=None, first_callbacks=()):
    """Factory for the ``trainer`` group: ``train_rows`` carry ``prompt`` (conversation) and ``x`` (for the reward).
    ``lora`` is the trained model's ``lora`` config value (``None`` = full fine-tuning). ``first_callbacks`` run
    before every other callback, so what they add to a step's logs reaches W&B, the JSONL log and the bar."""
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
    trainer.callback_handler.callbacks[:0] = list(first_callbacks)
    return trainer


def training_dtype(dtype: str, device: str, lora) -> torch.dtype:
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


def fit(cfg: Config, *, beta: float, policy_path: str, rows: list[dict], reward_fn, sampling, dtype: str,
        run_dir: RunDir, device: str, timer: StageTimer, label: str, tracker: Tracker | None = None, lora=None,
        first_callbacks=(), callbacks=()):
    """Build the ``trainer`` group's TRL trainer for one policy, train it to ``max_steps``, return it. Every step's
    logs go to ``train_log.jsonl``, a progress bar and, with a ``tracker``, W&B."""
    args = trainer_args(cfg.trainer, beta=beta, seed=cfg.seed, output_dir=str(run_dir.checkpoints),
                        sampling=sampling, device=device)
    trainer = build_trainer(cfg.trainer, model_path=policy_path, model_dtype=training_dtype(dtype, device, lora),
                            train_rows=rows, reward_fn=reward_fn, args=args,
                            callbacks=[RewardKLProgress(label), StepLog(run_dir.train_log, tracker), *callbacks],
                            lora=lora, first_callbacks=first_callbacks)
    # Time the policy's own sampling (the rest of a step is log-prob passes, the reward function and the update).
    trainer._generate = timer.wrap("policy_generation", trainer._generate)
    with timer("train_total"):
        trainer.train()
    if tracker is not None:  # every scored training sample, one W&B table (the rows of samples.jsonl)
        tracker.table("train/samples", read_jsonl(run_dir.samples))
    return trainer
