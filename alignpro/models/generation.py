"""The generation engine shared by the prompter (evaluation rewrites), the frozen model and the RLHF oracle.

One public function, :func:`generate_chat`: chat-format each conversation with the model's own template, left-pad,
generate in batches, decode only the new tokens (the model's input: :mod:`alignpro.models.chat`). Sampling
parameters (:class:`alignpro.models.sampling.Sampling`) mean exactly what they mean in ``transformers.generate``
(the paper's evaluation sampling is temperature 1.5, top_p 0.6, top_k 20; D8).

Two engines sit behind it, chosen by the ``generation`` config block (:class:`GenerationEngine`):

* ``hf`` (default) – ``model.generate`` with its dynamic KV cache, eager. This is TRL's default path and the path
  every published number of this repository was measured with, so it stays the default.
* ``compiled`` – :func:`alignpro.models.decode.decode`, our own static-cache loop whose decode step can be compiled
  into a CUDA graph (why and how: :mod:`alignpro.models.decode`).

``GenerationEngine.bucket`` (compiled engine only: on ``hf`` it would regroup rows and so change its seeded samples)
sorts a call's prompts by token length before cutting them into batches (order restored on
return), so each batch pads to a similar length: less wasted prefill and attention, and on the compiled engine
fewer distinct cache shapes. The evaluation already hands every rewrite of every prompt (``samples_per_prompt``)
to one call, so batching across the k rewrites of a prompt comes for free; bucketing puts those identical-length
copies side by side.

The trained policy's own rollouts during RL are TRL's ``RLOOTrainer._generate`` and do not go through this module;
see :func:`trl_generation_options` for what TRL 1.16 offers there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList

from alignpro.config.schema import GenerationConfig
from alignpro.models.chat import chat_ids, eos_ids, left_pad, pad_id_of
from alignpro.models.decode import decode
from alignpro.models.sampling import PromptCuts, Sampling, fit_prompts, prompt_budget


@dataclass(frozen=True)
class GenerationEngine:
    """Which engine generates (the ``generation`` config block): ``engine`` ∈ {hf, compiled}; ``compile`` ∈
    {auto, true, false} (compiled engine only; auto = on for CUDA); ``bucket`` = sort prompts by length into batches."""

    engine: str = "hf"
    compile: str | bool = "auto"
    bucket: bool = False

    def compiles(self, device: torch.device) -> bool:
        return device.type == "cuda" if self.compile == "auto" else bool(self.compile)

    @classmethod
    def from_config(cls, cfg: GenerationConfig) -> GenerationEngine:
        """From the ``generation`` block of a typed config."""
        return cls(cfg.engine, cfg.compile, cfg.bucket)


def trl_generation_options() -> dict:
    """What TRL 1.16's ``RLOOConfig`` offers for the trained policy's own rollouts (``RLOOTrainer._generate``).

    This repository does not rewrite TRL's generation; its options go through ``trainer.extra`` (passed verbatim to
    ``RLOOConfig``; alignpro/methods/rl/options.py):

    * ``cache_implementation: static`` – ``generate`` then uses a ``StaticCache`` and transformers compiles the
      decode step itself (the anchors' ``generate(cache_implementation="static")`` rows: 8B 99 → 22.5 ms/step,
      1.5B 88.7 → 14.0 ms/step at batch 64 on an H100). The cheapest way to put the prompter's training rollouts
      on the same static-cache idea as ``engine=compiled``: ``trainer.extra={cache_implementation: static}``.
      Unmeasured here with gradient checkpointing / LoRA toggling between steps (the policy's weights change every
      step, which a compiled graph handles since weights are read by address, but a LoRA adapter's enable/disable
      for ρ_ref may trigger recompiles).
    * ``use_transformers_continuous_batching: true`` – transformers' paged
      continuous-batching engine; ``transformers_continuous_batching_config`` tunes it.
    * ``use_vllm: true`` – vLLM (colocate or server); not a dependency of this repository.
    * ``generation_kwargs`` – extra ``GenerationConfig`` fields; they override the sampling fields.

    Returns the option names and the ``trainer.extra`` value that enables the static cache."""
    return {
        "static_cache": {"cache_implementation": "static"},
        "continuous_batching": {"use_transformers_continuous_batching": True},
        "vllm": {"use_vllm": True},
    }


def hf_sampling(sampling: Sampling) -> tuple[dict, LogitsProcessorList]:
    """``generate``'s keywords and the warpers to hand it as logits processors, for the hf engine.

    ``generate``'s own ``TopPLogitsWarper`` sorts the whole vocabulary of every row at every step, even after top-k
    has left k tokens: at 72 rows × 49,152 tokens that sort made SmolLM2's answers 1.23–1.31× slower on a 2-core
    CPU (docs/results.md §5). :meth:`Sampling.warpers` give the same logits without that sort
    (:class:`~alignpro.models.decode.TopKTopPLogitsWarper`). ``generate`` runs extra processors before its own
    warpers, so with its warpers off (temperature 1, top_k 0, top_p 1) and these appended after the caller's, the
    order is unchanged, and so are the probabilities and the random draws."""
    if sampling.temperature == 0:
        return sampling.generate_kwargs(), LogitsProcessorList()
    off = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": sampling.max_new_tokens}
    return off, sampling.warpers()


def _batches(lengths: list[int], batch_size: int, bucket: bool) -> list[list[int]]:
    """Index batches; with ``bucket`` the indices are sorted by prompt token length first (stable)."""
    order = list(range(len(lengths)))
    if bucket and len(lengths) > batch_size:
        order.sort(key=lambda i: lengths[i])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


@torch.inference_mode()
def generate_chat(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict]],
    sampling: Sampling,
    batch_size: int = 8,
    desc: str | None = None,
    engine: GenerationEngine | None = None,
    logits_processor: Callable[[int], LogitsProcessorList] | None = None,
    cuts: PromptCuts | None = None,
) -> list[str]:
    """Answer each conversation; returns the decoded new text (special tokens stripped), one string per input, in
    input order whatever the engine and bucketing. ``logits_processor(prompt_len)`` builds extra processors for a
    batch whose padded prompts are ``prompt_len`` tokens long (e.g. the judge's score-line grammar); ``generate``
    applies them before the sampling warpers. The compiled engine does not take them.

    A prompt longer than the model's context allows beside ``max_new_tokens`` is cut from the left, keeping a
    leading BOS (:func:`prompt_budget`, :func:`keep_tail`), and answered; ``cuts`` counts such prompts. Without
    the cut a model with learned positions (GPT-2) raises an IndexError, and a RoPE model (Llama) runs past the
    positions it was trained on and says nothing."""
    engine = engine or GenerationEngine()
    if logits_processor is not None and engine.engine != "hf":
        raise ValueError(f"generation.engine={engine.engine!r} cannot apply extra logits processors; use engine hf")
    outputs: list[str | None] = [None] * len(conversations)
    device = next(model.parameters()).device
    pad_id = pad_id_of(tokenizer)
    ids, n_cut = fit_prompts(chat_ids(tokenizer, conversations), prompt_budget(model, sampling.max_new_tokens),
                             tokenizer.bos_token_id)
    if cuts is not None:
        cuts.n += n_cut
    # hf batches rows in the order given (its seeded samples never depend on this key); bucketing is for compiled
    batches = _batches([len(x) for x in ids], batch_size, engine.bucket and engine.engine == "compiled")
    compiled = engine.engine == "compiled" and engine.compiles(device)
    eos = eos_ids(model, tokenizer)
    hf_kwargs, warpers = hf_sampling(sampling)
    for idx in tqdm(batches, desc=desc, disable=desc is None or len(batches) < 2, leave=False):
        enc = {k: v.to(device) for k, v in left_pad([ids[i] for i in idx], pad_id).items()}
        if engine.engine == "hf":
            prompt_len = enc["input_ids"].shape[1]
            extra = logits_processor(prompt_len) if logits_processor is not None else []
            out = model.generate(**enc, **hf_kwargs, logits_processor=LogitsProcessorList([*extra, *warpers]),
                                 pad_token_id=pad_id, eos_token_id=eos or None)
            new_tokens = out[:, prompt_len:]
        else:
            new_tokens = decode(model, enc["input_ids"], enc["attention_mask"], sampling, eos, pad_id,
                                compiled).tokens
        for i, text in zip(idx, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
            outputs[i] = text.strip()
    return outputs  # type: ignore[return-value]
