"""Eq. 9's value, logged each step for both trained arms: ``objective = reward − λ·kl_seq`` next to its two terms.

Align-Pro (alignpro/methods/alignpro.py, where eq. 9 is written out) and the RLHF oracle (alignpro/methods/oracle.py)
train with the same objective, the oracle with π_F in place of ρ, so both log it through this one callback.
"""

from __future__ import annotations

from transformers import TrainerCallback


class Objective(TrainerCallback):
    """Eq. 9 per step. TRL logs ``reward``, the step's mean r(x, y) before the penalty, and ``kl`` as a per-token
    mean (Σ kl·mask / Σ mask); times ``completions/mean_length`` (Σ mask / n) that is the mean over rewrites of
    Σ_t log ρ/ρ_ref, the KL estimate that λ weighs: ``kl_seq``. It runs before the other callbacks, which share
    the ``logs`` dict, so W&B, the JSONL log and the bar all see both numbers."""

    def __init__(self, lam: float):
        self.lam = lam

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not isinstance(logs.get("kl"), (int, float)) or "completions/mean_length" not in logs:
            return
        logs["kl_seq"] = logs["kl"] * logs["completions/mean_length"]
        if isinstance(logs.get("reward"), (int, float)):
            logs["objective"] = logs["reward"] - self.lam * logs["kl_seq"]
