"""The compiled engine's decode loop (``generation.engine=compiled``): static-cache generation of one batch.

:func:`decode` runs one prefill into a preallocated ``transformers.StaticCache``, then one-token decode steps whose
every input has a fixed shape and address (the attention mask is allocated once at the cache's full length;
causality hides the not-yet-written slots), so the step can be wrapped in ``torch.compile(mode="reduce-overhead")``,
i.e. replayed as a CUDA graph. On the GPU anchors (``docs/gpu-anchors.md``) eager decoding at batch 64 is bound by
kernel launches (≈ 82 ms per step for the 8B shape against a 10.6 ms weight-streaming floor); a graph-replayed
static-cache step is what removes that overhead. Rows stop individually at EOS (they then emit padding, as in
``generate``) and the loop exits as soon as every row has finished. Sampling reuses transformers' own
``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and ``TopPLogitsWarper`` in ``generate``'s order on fp32 logits
(:meth:`alignpro.models.sampling.Sampling.warpers`), then ``softmax`` + ``torch.multinomial``, the same ops
``generate`` runs, so 1.5 / 0.6 / 20 mean the same thing on both engines.

``generation.compile`` is ``auto`` (compile only on CUDA), ``true`` or ``false``. On CPU ``torch.compile`` needs a C++
toolchain, takes tens of seconds per new shape and gives little: the CPU step is bound by matmul FLOPs and weight
reads, not by launch overhead, so ``auto`` leaves it off there.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import GenerationMixin, StaticCache, TopKLogitsWarper, TopPLogitsWarper

if TYPE_CHECKING:
    from alignpro.models.sampling import Sampling

# Decode-cache lengths are rounded up to this multiple so that a compiled step sees few distinct shapes.
CACHE_LEN_MULTIPLE = 64


class TopKTopPLogitsWarper:
    """transformers' ``TopKLogitsWarper`` then ``TopPLogitsWarper`` (min_tokens_to_keep 1), without the sort of the
    whole vocabulary: the same kept tokens with the same logits. ``TopPLogitsWarper`` sorts each row ascending (0.18
    to 0.25 s per step for 72 rows × 49,152 tokens on a 2-core CPU, beside SmolLM2's 0.78 s decode step), then takes a
    softmax and a cumulative sum over it. After top-k that sorted row is −inf but for the k survivors at its end, so
    this builds the same row from ``torch.topk`` and runs the same two ops on it: the same floats.

    Equal logits among the k + 1 largest of any row hand the whole call to the two warpers themselves: where the
    k-th logit is tied, ``TopKLogitsWarper`` keeps every tied token, and where top-p cuts between tied tokens, which
    one stays depends on the order ``torch.sort`` gives them. SmolLM2 met one such step in 4,608 of the demo's."""

    def __init__(self, top_k: int, top_p: float):
        self.top_k, self.top_p = top_k, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        n, k = scores.size(-1), min(self.top_k, scores.size(-1))
        vals, idx = torch.topk(scores, min(n, k + 1), dim=-1)  # descending
        if bool((vals[..., 1:] == vals[..., :-1]).any()):
            return TopPLogitsWarper(self.top_p)(input_ids, TopKLogitsWarper(self.top_k)(input_ids, scores))
        ascending, idx = vals[..., :k].flip(-1), idx[..., :k]
        row = torch.full_like(scores, float("-inf"))
        row[..., n - k :] = ascending  # TopPLogitsWarper's sorted row
        remove = (row.softmax(dim=-1).cumsum(dim=-1) <= (1 - self.top_p))[..., n - k :]
        remove[..., -1:] = False  # min_tokens_to_keep = 1: the most likely token always stays
        kept = ascending.masked_fill(remove, float("-inf")).flip(-1)
        return torch.full_like(scores, float("-inf")).scatter(-1, idx, kept)


# Generation-config fields that make ``generate`` add logits processors of its own; the compiled engine does not
# reproduce them, so a model that sets one is refused rather than sampled differently.
_UNSUPPORTED = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                "encoder_repetition_penalty": 1.0, "min_length": 0, "min_new_tokens": None, "bad_words_ids": None,
                "suppress_tokens": None, "begin_suppress_tokens": None, "forced_bos_token_id": None,
                "forced_eos_token_id": None, "min_p": None, "typical_p": 1.0, "epsilon_cutoff": 0.0,
                "eta_cutoff": 0.0, "sequence_bias": None, "top_h": None}


def _check_generation_config(model: Any) -> None:
    gen = getattr(model, "generation_config", None)
    for key, default in _UNSUPPORTED.items():
        value = getattr(gen, key, default) if gen is not None else default
        if value not in (default, None):
            raise ValueError(f"the model's generation_config sets {key}={value!r}, which generate() applies and "
                             "generation.engine=compiled does not; use generation.engine=hf for this model")


@dataclass
class Decoded:
    """Output of :func:`decode`: ``tokens`` [B, steps] (padding after a row's EOS) and the decode steps run."""

    tokens: torch.Tensor
    steps: int


# Compiled steps per model object; weak keys, so a freed model's graph goes with it (an id() could be reused).
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cache_kwarg(model: Any) -> str:
    """The keyword under which ``model``'s forward takes its KV cache: ``cache`` in transformers 5.25 (tested),
    whose ``past_key_values`` is a deprecated alias (a FutureWarning on every call, removed in 5.40), and
    ``past_key_values`` in a release before the rename (pyproject allows 5.23). Read from the model's own forward
    signature (the base model's under a peft wrapper, whose forward only takes ``**kwargs``); a forward that names
    neither gets what transformers' own ``prepare_inputs_for_generation`` takes."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _cache_kwarg_of(type(base))


@functools.cache
def _cache_kwarg_of(cls: type) -> str:
    for params in (inspect.signature(cls.forward).parameters,
                   inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters):
        for name in ("cache", "past_key_values"):
            if name in params:
                return name
    return "past_key_values"


def _step_fn(model: Any, compiled: bool) -> Callable:
    """One decode forward returning the last position's fp32 logits; compiled once per model object."""
    cache_name = cache_kwarg(model)

    def step(input_ids, position_ids, attention_mask, cache):
        out = model(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                    use_cache=True, logits_to_keep=1, **{cache_name: cache})
        return out.logits[:, -1].float()

    if not compiled:
        return step
    if model not in _COMPILED:
        mode = "reduce-overhead" if next(model.parameters()).device.type == "cuda" else None
        _COMPILED[model] = torch.compile(step, mode=mode, fullgraph=False)
    return _COMPILED[model]


@torch.inference_mode()
def decode(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, sampling: Sampling, eos: list[int],
           pad_id: int, compiled: bool = False) -> Decoded:
    """Static-cache generation for one left-padded batch: prefill, then one token per step until every row has
    emitted an EOS id or ``max_new_tokens`` is reached. Greedy is ``argmax`` of the fp32 logits; sampling is
    ``multinomial(softmax(warpers(logits)))``, both exactly as in ``generate``'s ``_sample`` loop."""
    _check_generation_config(model)
    batch, prompt_len = input_ids.shape
    device = input_ids.device
    n_new = sampling.max_new_tokens
    cache_len = prompt_len + n_new
    if compiled:  # few distinct shapes -> few graphs
        cache_len = -(-cache_len // CACHE_LEN_MULTIPLE) * CACHE_LEN_MULTIPLE
    cache = StaticCache(config=model.config, max_cache_len=cache_len)
    # The full-length mask is allocated once: slots not yet written are hidden by causality, not by the mask.
    mask = torch.ones(batch, cache_len, dtype=attention_mask.dtype, device=device)
    mask[:, :prompt_len] = attention_mask
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    warpers = sampling.warpers()
    greedy = sampling.temperature == 0
    eos_t = torch.tensor(eos, device=device, dtype=torch.long)
    unfinished = torch.ones(batch, dtype=torch.bool, device=device)
    out = torch.full((batch, n_new), pad_id, dtype=torch.long, device=device)
    step = _step_fn(model, compiled)

    logits = model(input_ids=input_ids, position_ids=positions, attention_mask=mask, use_cache=True,
                   logits_to_keep=1, **{cache_kwarg(model): cache}).logits[:, -1].float()
    next_pos = positions[:, -1:] + 1
    steps = 0
    for t in range(n_new):
        if greedy:
            nxt = torch.argmax(logits, dim=-1)
        else:
            # warpers ignore input_ids for these three; generate passes the ids so far, shape [B, L+t]
            scores = warpers(input_ids, logits)
            nxt = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad_id))
        out[:, t] = nxt
        steps = t + 1
        if eos_t.numel():
            unfinished &= ~torch.isin(nxt, eos_t)
        if t + 1 == n_new or not bool(unfinished.any()):
            break
        logits = step(nxt[:, None], next_pos, mask, cache)
        if compiled:
            logits = logits.clone()  # a CUDA-graph output is overwritten by the next replay
        next_pos = next_pos + 1
    return Decoded(out[:, :steps], steps)
