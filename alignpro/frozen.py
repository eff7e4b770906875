"""The frozen LLM π_F(y|x′): answers the rewritten prompt and is never updated by Align-Pro.

Backends sit behind one interface, :class:`Frozen` (``answer(prompts) -> answers``); the episode and the
evaluation only see that interface. The local HF backend is here; an API backend (vLLM, TGI, hosted models)
is one more class with the same method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from alignpro.assets import load_causal_lm, resolve_model
from alignpro.rollout import Sampling, generate_chat


class Frozen(Protocol):
    """What the episode and the evaluation need from a frozen model."""

    def answer(self, prompts: list[str], sampling: Sampling | None = None, desc: str | None = None) -> list[str]:
        """One answer per prompt; the model sees only the prompt (x′ for Align-Pro) in its user turn."""


@dataclass
class HFFrozen:
    """A frozen causal LM run in-process with ``transformers``; gradients are never taken through it."""

    model: Any
    tokenizer: Any
    sampling: Sampling
    system: str | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        self.model.requires_grad_(False)

    def answer(self, prompts: list[str], sampling: Sampling | None = None, desc: str | None = None) -> list[str]:
        turns = [{"role": "system", "content": self.system}] if self.system else []
        convs = [turns + [{"role": "user", "content": p}] for p in prompts]
        return generate_chat(self.model, self.tokenizer, convs, sampling or self.sampling, self.batch_size, desc)


def frozen_path(cfg) -> str:
    """Where the frozen model's weights are (``cfg`` is the ``frozen`` config group)."""
    return resolve_model(cfg.source, cfg.get("model_id"), role="frozen")


def build_frozen(cfg, device: str = "cpu", path: str | None = None) -> HFFrozen:
    """Factory for the ``frozen`` config group. ``path`` loads other weights (the trained RLHF oracle)."""
    if cfg.backend != "hf":
        raise ValueError(f"frozen.backend='{cfg.backend}' is not available; valid: hf")
    model, tok = load_causal_lm(path or frozen_path(cfg), cfg.dtype, device)
    s = cfg.sampling
    sampling = Sampling(cfg.max_new_tokens, s.temperature, s.top_p, s.top_k)
    return HFFrozen(model, tok, sampling, cfg.get("system"), cfg.batch_size)
