"""What every config group may hold: the valid choices and the LoRA rules, in one torch-free place.

:mod:`alignpro.config` checks a composed config against these before anything loads; the modules that use a value
(the factories) import the same names and trust what was checked. Each group's module:

| group / key   | module                    | choices here            |
|---------------|---------------------------|-------------------------|
| method        | alignpro/methods/         | ``alignpro.methods.METHODS`` (the registry) |
| trainer       | alignpro/rl.py            | TRAINERS, LORA_DEFAULTS |
| prompter      | alignpro/prompter.py      | PLACEHOLDER, REWRITES   |
| frozen        | alignpro/frozen.py        | FROZEN_BACKENDS         |
| reward        | alignpro/reward.py        | REWARD_KINDS, REWARD_PROMPTS |
| judge         | alignpro/judge.py         | JUDGE_BACKENDS          |
| generation    | alignpro/generation.py    | ENGINES, COMPILE        |
| logger        | alignpro/tracking.py      | LOGGER_BACKENDS         |
| dataset       | alignpro/data.py          | (its own option lists)  |
| device        | alignpro/train.py         | DEVICES                 |
"""

from __future__ import annotations

import math
import re
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
TRAINERS = ("rloo", "grpo")
PLACEHOLDER = "[PROMPT]"  # where the meta-prompt puts the user prompt x
REWRITES = ("full", "append")  # x′ is the prompter's output, or x followed by it
FROZEN_BACKENDS = ("hf", "openai_api")
JUDGE_BACKENDS = ("openai_api", "hf")
REWARD_KINDS = ("bt_encoder", "hf_classifier")  # alignpro/reward_bt.py, alignpro/reward_hf.py
REWARD_PROMPTS = ("original", "rewritten")  # r(x, y) (eq. 9, D5) or r(x′, y) (ablation)
ENGINES = ("hf", "compiled")
COMPILE = ("auto", True, False)
LOGGER_BACKENDS = ("wandb", "none")
EXTRA_SAMPLING = ("top_k", "generation_config", "none")  # how an API model gets top_k (alignpro/api.py)
SCORE_LINE_MAX_TOKENS = len("10 10\n")  # the judge's longest score line; every allowed token adds ≥ 1 character
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # an environment variable's name
# A config key that holds a secret: never a config value, always an environment variable.
SECRET_KEY = re.compile(r"(api_?key|token|secret|password|passwd)$", re.IGNORECASE)

# Defaults for keys a ``lora`` dict leaves out, so ``prompter.lora={r: 8}`` is enough on the command line.
# alpha = 2r (the common ratio; the adapter's scale alpha/r stays 2 whatever r); "all-linear" = every linear layer of
# the transformer blocks (attention and MLP), not the output head.
LORA_DEFAULTS: dict[str, Any] = {"r": 16, "alpha": None, "dropout": 0.05, "target_modules": "all-linear"}


def integer_at_least(v: Any, low: int) -> bool:
    """An int (not a bool) ≥ ``low``."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def number_above(v: Any, low: float, strict: bool = True) -> bool:
    """A finite int or float (not a bool) > ``low`` (≥ with ``strict=False``)."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return ok and (v > low if strict else v >= low)


def lora_options(lora: Any) -> dict[str, Any] | None:
    """A model config's ``lora`` value, checked and completed: ``None`` for full fine-tuning (``null``/``false``),
    else the options with defaults filled in (``alpha`` = 2r). Raises ``ValueError`` naming the bad value."""
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
    extra = sorted(set(opts) - set(LORA_DEFAULTS))
    if extra:  # passed to peft verbatim: only then is peft (and torch) imported, to name the fields it takes
        import dataclasses

        from peft import LoraConfig

        fields = {f.name for f in dataclasses.fields(LoraConfig)}
        unknown = [k for k in extra if k not in fields]
        if unknown:
            raise ValueError(f"lora.{unknown[0]} is not a LoRA option; valid keys: r, alpha, dropout, "
                             "target_modules, or any peft.LoraConfig field (e.g. use_rslora, modules_to_save)")
    return opts
