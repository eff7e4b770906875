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
tokenizer; :func:`alignpro.models.assets.load_causal_lm` loads either kind of folder. Evaluation uses the trained model
as it is in memory; a LoRA model keeps its adapter **unmerged**: ``merge_and_unload`` would add ΔW = (α/r)·B·A into
bf16 base weights, whose rounding error (up to 2⁻⁸ ≈ 0.4 % of each weight) is of the order of ΔW itself after a
short run at lr 1.41e-5 (about 1 % of a weight), so the merged model would not be the trained one; the unmerged
adapter costs two rank-r matmuls per linear layer, small beside the layer's own matmul at r = 16.

Modules:

* ``options`` – the ``trainer`` group and ``lora`` key → TRL's config, the step budget, the ``peft.LoraConfig``,
  the trained weights' dtype (torch-free at import: config validation and the plan tool use it);
* ``trl_internals`` – the one door to TRL's private trainer attributes, and the check that the installed TRL has
  them;
* ``guards`` – the edges of docs/faults.md set up on every trainer: prompts cut to the context, non-finite
  log-probs stopped;
* ``callbacks`` – the per-step log, progress bar, checkpoint marker and non-finite-log stop;
* ``trainer`` – :func:`build_trainer` and :func:`fit`.

Importing this package loads neither torch nor TRL: the names of ``callbacks``, ``guards`` and ``trainer`` are
imported on first use (module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from alignpro.methods.rl.options import (
    LORA_KEYS,
    check_trainer_extra,
    lora_config,
    resolve_max_steps,
    trainer_args,
    training_dtype,
)
from alignpro.methods.rl.trl_internals import PRIVATE_TRL_ATTRIBUTES, check_trl_internals

if TYPE_CHECKING:
    from alignpro.methods.rl.callbacks import (
        FINITE_KEYS,
        CheckpointComplete,
        FiniteLogs,
        RewardKLProgress,
        StepLog,
        completion_text,
    )
    from alignpro.methods.rl.guards import fit_policy_prompts, guard_log_probs
    from alignpro.methods.rl.trainer import build_trainer, fit, quiet_library_noise

# name → the submodule that defines it, imported when the name is first asked for (it imports torch/transformers)
_LAZY = {
    **dict.fromkeys(("FINITE_KEYS", "CheckpointComplete", "FiniteLogs", "RewardKLProgress", "StepLog",
                     "completion_text"), "callbacks"),
    **dict.fromkeys(("fit_policy_prompts", "guard_log_probs"), "guards"),
    **dict.fromkeys(("build_trainer", "fit", "quiet_library_noise"), "trainer"),
}

__all__ = [
    "FINITE_KEYS", "LORA_KEYS", "PRIVATE_TRL_ATTRIBUTES", "CheckpointComplete", "FiniteLogs", "RewardKLProgress",
    "StepLog", "build_trainer", "check_trainer_extra", "check_trl_internals", "completion_text", "fit",
    "fit_policy_prompts", "guard_log_probs", "lora_config", "quiet_library_noise", "resolve_max_steps",
    "trainer_args", "training_dtype",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
