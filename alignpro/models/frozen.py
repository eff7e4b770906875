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

import torch

from alignpro.config.schema import FrozenConfig
from alignpro.models.api import ChatClient
from alignpro.models.api_failures import ChatAPIError
from alignpro.models.assets import load_causal_lm, resolve_model
from alignpro.models.chat import chat
from alignpro.models.generation import GenerationEngine, generate_chat
from alignpro.models.sampling import PromptCuts, Sampling
from alignpro.run.errors import BadInput


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
        return self.converse([chat(p, self.system) for p in prompts], sampling, desc)

    def converse(self, conversations: list[list[dict]], sampling: Sampling | None = None,
                 desc: str | None = None) -> list[str]:
        """One answer per whole conversation (``[{"role", "content"}, ...]``, as a chat client sends it); the
        batch is answered or fails as one."""
        return generate_chat(self.model, self.tokenizer, conversations, sampling or self.sampling, self.batch_size,
                             desc, self.engine, cuts=self.cuts)


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
        return self.converse([chat(p, self.system) for p in prompts], sampling, desc)

    def converse(self, conversations: list[list[dict]], sampling: Sampling | None = None,
                 desc: str | None = None, each: bool = False) -> list:
        """One answer per whole conversation (``[{"role", "content"}, ...]``), forwarded as it is. ``each=True``:
        a request that fails for good is its :class:`ChatAPIError` in its place; the others are still answered."""
        if each:
            return [a if isinstance(a, ChatAPIError) else a.strip()
                    for a in self.client.complete(conversations, sampling or self.sampling, desc, each=True)]
        try:
            answers = self.client.complete(conversations, sampling or self.sampling, desc)
        except ChatAPIError as err:
            # How far the run got with the server: a failed run has no metrics.json for these counts, and its
            # error.txt holds the traceback, notes included (alignpro.train.main).
            err.add_note(f"frozen_api: {json.dumps(self.client.stats.as_dict())}")
            raise
        # Stripped like generate_chat's decoded text, so both backends hand the reward the same kind of string.
        return [a.strip() for a in answers]


class FP16WeightLinear(torch.nn.Module):
    """A frozen ``nn.Linear`` whose weight is stored in fp16 and packed for fbgemm's fp16-weight GEMM; activations,
    sums and outputs stay fp32, so the layer computes x·fp16(W)ᵀ. A decode step reads every weight once for a few
    rows, where the fp32 GEMM runs far below its peak on a CPU: half the bytes and a layout packed for small batches
    make SmolLM2's decoding ~1.6× faster at batch 8 (docs/results.md §5)."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.packed = torch.ops.quantized.linear_prepack_fp16(linear.weight.detach().float(), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic_fp16(x.reshape(-1, self.in_features).float(), self.packed)
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


def quantized_engines() -> list[str]:
    """The quantized-kernel engines this build of torch has: fbgemm on x86, qnnpack on ARM."""
    return list(torch.backends.quantized.supported_engines)


def fp16_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Every ``nn.Linear`` of an fp32 CPU model (the output head included) as an :class:`FP16WeightLinear`, in place.
    The input embedding stays fp32, also when the head shares its weight. Needs fbgemm, which x86 builds of torch
    have; elsewhere (ARM, a Mac) it refuses with one line instead of failing inside the first answer."""
    engines = quantized_engines()
    if "fbgemm" not in engines:
        raise BadInput("frozen.cpu_weights=fp16 needs torch's fbgemm kernels, which this build of torch lacks "
                       f"(its quantized engines: {', '.join(engines)}); use frozen.cpu_weights=fp32")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, FP16WeightLinear(child))
    return model


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
    return HFResponder(answering(model, cfg, device), tok, sampling, cfg.system, cfg.batch_size,
                       engine or GenerationEngine())


def answering(model: Any, cfg: FrozenConfig, device: str) -> Any:
    """The frozen model as it answers: ``frozen.cpu_weights=fp16`` packs an fp32 model's Linears on a CPU
    (:func:`fp16_weights`); anything else is returned as it is. The RLHF oracle's trained copy goes through here too,
    a LoRA adapter merged first, so every arm answers with the same kind of weights."""
    if cfg.cpu_weights != "fp16" or device != "cpu" or model.dtype != torch.float32:
        return model
    if hasattr(model, "merge_and_unload"):  # a PEFT model: pack the merged weights, not the adapter's parts
        model = model.merge_and_unload()
    return fp16_weights(model)
