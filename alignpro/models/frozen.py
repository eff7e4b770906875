"""The frozen LLM π_F(y|x′): answers the rewritten prompt and is never updated by Align-Pro.

Backends sit behind one interface, :class:`Responder` (``answer(prompts) -> answers``); the reward functions and the
evaluation only see that interface. ``frozen.backend`` picks one:

* ``hf``         – :class:`HFResponder`, a causal LM run in-process with ``transformers``.
* ``openai_api`` – :class:`APIResponder`, any OpenAI-compatible chat endpoint (vLLM, TGI, ``transformers serve``, a
  hosted model) through :class:`alignpro.models.api.ChatClient` (concurrency, retries, counted failures, no key in
  configs or logs). Such a model can answer but not be trained, so ``method=rlhf`` (the oracle fine-tunes the
  frozen model itself, D7) needs ``hf``; :func:`alignpro.config.validate.validate` says so before anything loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from alignpro.config.schema import FrozenConfig
from alignpro.models.api import ChatClient
from alignpro.models.api_failures import ChatAPIError
from alignpro.models.assets import load_causal_lm, resolve_model
from alignpro.models.chat import chat
from alignpro.models.generation import GenerationEngine, generate_chat
from alignpro.models.sampling import PromptCuts, Sampling


class Responder(Protocol):
    """What the reward functions and the evaluation need from a frozen model."""

    def answer(self, prompts: list[str], sampling: Sampling | None = None, desc: str | None = None) -> list[str]:
        """One answer per prompt; the model sees only the prompt (x′ for Align-Pro) in its user turn."""


@dataclass
class HFResponder:
    """A frozen causal LM run in-process with ``transformers``; gradients are never taken through it."""

    model: Any
    tokenizer: Any
    sampling: Sampling
    system: str | None = None
    batch_size: int = 8
    engine: GenerationEngine = field(default_factory=GenerationEngine)  # the `generation` config block
    cuts: PromptCuts = field(default_factory=PromptCuts)  # prompts cut to fit the context (generate_chat)

    def __post_init__(self) -> None:
        self.model.requires_grad_(False)

    def answer(self, prompts: list[str], sampling: Sampling | None = None, desc: str | None = None) -> list[str]:
        # An empty prompt (an empty rewrite x′) is a user turn like any other: answered, never skipped.
        convs = [chat(p, self.system) for p in prompts]
        return generate_chat(self.model, self.tokenizer, convs, sampling or self.sampling, self.batch_size, desc,
                            self.engine, cuts=self.cuts)


@dataclass
class APIResponder:
    """A frozen model behind an OpenAI-compatible endpoint; one request per prompt, ``client.max_concurrency`` at
    a time. A request that fails for good raises :class:`alignpro.models.api_failures.ChatAPIError`: no answer is
    made up."""

    client: ChatClient
    sampling: Sampling
    system: str | None = None

    def answer(self, prompts: list[str], sampling: Sampling | None = None, desc: str | None = None) -> list[str]:
        # Sent as they are, an empty prompt too; the server applies its own context limit (nothing is cut here).
        convs = [chat(p, self.system) for p in prompts]
        try:
            answers = self.client.complete(convs, sampling or self.sampling, desc)
        except ChatAPIError as err:
            # How far the run got with the server: a failed run has no metrics.json for these counts, and its
            # error.txt holds the traceback, notes included (alignpro.train.main).
            err.add_note(f"frozen_api: {json.dumps(self.client.stats.as_dict())}")
            raise
        # Stripped like generate_chat's decoded text, so both backends hand the reward the same kind of string.
        return [a.strip() for a in answers]


def frozen_path(cfg: FrozenConfig) -> str:
    """Where the frozen model's weights are."""
    return resolve_model(cfg.source, cfg.model_id, role="frozen")


def build_frozen(cfg: FrozenConfig, device: str = "cpu", path: str | None = None,
                 engine: GenerationEngine | None = None) -> Responder:
    """Factory for the ``frozen`` config group. ``path`` loads other weights (the trained RLHF oracle); ``engine``
    (the top-level ``generation`` block) picks the generation engine of the ``hf`` backend."""
    sampling = Sampling.from_config(cfg.sampling, cfg.max_new_tokens)
    if cfg.backend == "openai_api":
        if path is not None:
            raise ValueError("frozen.backend=openai_api serves a model behind an API: it cannot load other weights "
                             f"({path}); the RLHF oracle needs frozen.backend=hf")
        client = ChatClient.from_config(cfg)
        client.api_key()  # a missing key fails here, before any training, not at the first answer
        return APIResponder(client, sampling, cfg.system)
    model, tok = load_causal_lm(path or frozen_path(cfg), cfg.dtype, device)
    return HFResponder(model, tok, sampling, cfg.system, cfg.batch_size, engine or GenerationEngine())
