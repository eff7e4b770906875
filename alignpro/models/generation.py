"""The generation engine shared by the prompter (evaluation rewrites), the frozen model and the RLHF oracle.

One public function, :func:`generate_chat`: chat-format each conversation with the model's own template, left-pad,
generate in batches, decode only the new tokens. Sampling parameters mean exactly what they mean in
``transformers.generate`` (the paper's evaluation sampling is temperature 1.5, top_p 0.6, top_k 20; D8).

Two engines sit behind it, chosen by the ``generation`` config block (:class:`GenerationEngine`):

* ``hf`` (default) – ``model.generate`` with its dynamic KV cache, eager. This is TRL's default path and the path
  every published number of this repository was measured with, so it stays the default.
* ``compiled`` – :func:`decode`, our own loop: one prefill into a preallocated ``transformers.StaticCache``, then
  one-token decode steps whose every input has a fixed shape and address (the attention mask is allocated once at
  the cache's full length; causality hides the not-yet-written slots), so the step can be wrapped in
  ``torch.compile(mode="reduce-overhead")``, i.e. replayed as a CUDA graph. On the GPU anchors
  (``docs/gpu-anchors.md``) eager decoding at batch 64 is bound by kernel launches (≈ 82 ms per
  step for the 8B shape against a 10.6 ms weight-streaming floor); a graph-replayed static-cache step is what
  removes that overhead. Rows stop individually at EOS (they then emit padding, as in ``generate``) and the loop
  exits as soon as every row has finished. Sampling reuses transformers' own ``TemperatureLogitsWarper``,
  ``TopKLogitsWarper`` and ``TopPLogitsWarper`` in ``generate``'s order on fp32 logits, then ``softmax`` +
  ``torch.multinomial``, the same ops ``generate`` runs, so 1.5 / 0.6 / 20 mean the same thing on both engines.

``generation.compile`` is ``auto`` (compile only on CUDA), ``true`` or ``false``. On CPU ``torch.compile`` needs a C++
toolchain, takes tens of seconds per new shape and gives little: the CPU step is bound by matmul FLOPs and weight
reads, not by launch overhead, so ``auto`` leaves it off there.

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

import functools
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import (
    GenerationMixin,
    LogitsProcessorList,
    StaticCache,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from alignpro.config.schema import GenerationConfig
from alignpro.run.errors import BadInput

# Decode-cache lengths are rounded up to this multiple so that a compiled step sees few distinct shapes.
CACHE_LEN_MULTIPLE = 64


@dataclass(frozen=True)
class Sampling:
    """How to draw tokens. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    @classmethod
    def from_config(cls, sampling_cfg: Any, max_new_tokens: int) -> Sampling:
        """From a config's ``sampling`` block (``temperature``, ``top_p``, ``top_k``) and a token budget."""
        return cls(max_new_tokens, sampling_cfg.temperature, sampling_cfg.top_p, sampling_cfg.top_k)

    def generate_kwargs(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_new_tokens": self.max_new_tokens,
        }

    def warpers(self) -> LogitsProcessorList:
        """The logits warpers ``generate`` builds for these settings, in its order (temperature, top-k, top-p), with
        the same no-op conditions (temperature 1, top_k 0, top_p 1 add nothing)."""
        out = LogitsProcessorList()
        if self.temperature == 0:
            return out
        if self.temperature != 1.0:
            out.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k != 0 and self.top_p < 1.0:
            out.append(TopKTopPLogitsWarper(self.top_k, self.top_p))  # the two below in one, on the k survivors
            return out
        if self.top_k != 0:
            out.append(TopKLogitsWarper(top_k=self.top_k, min_tokens_to_keep=1))
        if self.top_p < 1.0:
            out.append(TopPLogitsWarper(top_p=self.top_p, min_tokens_to_keep=1))
        return out


class TopKTopPLogitsWarper:
    """transformers' ``TopKLogitsWarper`` then ``TopPLogitsWarper`` (min_tokens_to_keep 1), computed on the k
    survivors only. After top-k every other logit is −inf and has probability 0, so top-p's ascending cumulative
    sum over the whole vocabulary equals the one over the k survivors: the same tokens are kept with the same
    logits. What changes is the cost: ``TopPLogitsWarper`` sorts the full vocabulary every step (about 0.4 s per
    step for 72 rows × 49,152 tokens on a 2-core CPU, more than the model's own decode step), this sorts k values.
    One difference: at an exact tie with the k-th logit, ``TopKLogitsWarper`` keeps every tied token, this keeps k."""

    def __init__(self, top_k: int, top_p: float):
        self.top_k, self.top_p = top_k, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vals, idx = torch.topk(scores, min(self.top_k, scores.size(-1)), dim=-1)  # descending
        ascending = vals.flip(-1)
        remove = ascending.softmax(dim=-1).cumsum(dim=-1) <= (1 - self.top_p)  # as TopPLogitsWarper, ascending
        remove[..., -1:] = False  # min_tokens_to_keep = 1: the most likely token always stays
        kept = ascending.masked_fill(remove, float("-inf")).flip(-1)
        return torch.full_like(scores, float("-inf")).scatter(-1, idx, kept)


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


def chat(user: str, system: str | None = None) -> list[dict]:
    """One conversation: an optional system turn, then the user turn (every model's input is built here)."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def keep_tail(ids: list[int], max_length: int, bos_id: int | None) -> list[int]:
    """Left truncation that keeps a leading BOS: the BOS plus the last ``max_length − 1`` tokens. The one cut of
    an over-long input, for generation prompts (:func:`fit_prompts`) and reward-model inputs
    (alignpro/models/reward_hf.py):
    the end is kept because the chat template puts the generation prompt there, and a reward model pools on it."""
    if len(ids) <= max_length:
        return ids
    head = ids[:1] if bos_id is not None and ids[:1] == [bos_id] else []
    return head + ids[len(ids) - (max_length - len(head)) :]


def context_length(model) -> int | None:
    """The model's context in tokens (``max_position_embeddings`` of its text config), or None when it sets none."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    n = getattr(text, "max_position_embeddings", None)
    return int(n) if n else None


def prompt_budget(model, max_new_tokens: int) -> int | None:
    """How many prompt tokens fit in the model's context beside ``max_new_tokens`` new ones (None: no known limit).
    A budget that leaves no room for a prompt is a setting that can never work, for any prompt: refused."""
    n = context_length(model)
    if n is None:
        return None
    if max_new_tokens >= n:
        name = getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__
        raise BadInput(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the context of {name} "
                       f"({n} tokens, max_position_embeddings); set it below {n}")
    return n - max_new_tokens


def fit_prompts(ids: list[list[int]], budget: int | None, bos_id: int | None) -> tuple[list[list[int]], int]:
    """Each prompt cut from the left to ``budget`` tokens (:func:`keep_tail`); returns them and how many were cut."""
    if budget is None:
        return ids, 0
    kept = [keep_tail(x, budget, bos_id) for x in ids]
    return kept, sum(len(a) != len(b) for a, b in zip(ids, kept, strict=True))


@dataclass
class PromptCuts:
    """A running count of prompts cut to fit a model's context (read by the ``truncated_*`` counters)."""

    n: int = 0


def cut_count(obj: Any) -> int:
    """Prompts a prompter or responder has cut so far; 0 for one that cuts none (a model behind an API)."""
    cuts = getattr(obj, "cuts", None)
    return cuts.n if isinstance(cuts, PromptCuts) else 0


def chat_ids(tokenizer, conversations: list[list[dict]]) -> list[list[int]]:
    """Unpadded prompt ids of each conversation in the model's chat template, generation prompt appended."""
    if tokenizer.chat_template is None:
        raise ValueError(
            f"tokenizer '{tokenizer.name_or_path}' has no chat template; set one (e.g. from trl/chat_templates) "
            "before using it as a prompter or frozen model."
        )
    if not conversations:
        return []
    out = tokenizer.apply_chat_template(conversations, add_generation_prompt=True, tokenize=True, return_dict=True)
    return [list(x) for x in out["input_ids"]]


def left_pad(ids: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids``/``attention_mask`` of a left-padded batch. The mask is built from each row's length, never
    from the pad id: with pad == EOS (Llama-3.1, SmolLM2) the EOS that the chat template puts after every turn is
    a real token and stays attended."""
    width = max(len(x) for x in ids)
    input_ids = torch.tensor([[pad_id] * (width - len(x)) + x for x in ids], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": mask}


def pad_id_of(tokenizer) -> int:
    """The id batches are padded with: the tokenizer's pad, else its EOS (masked either way)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def chat_inputs(tokenizer, conversations: list[list[dict]], max_prompt_tokens: int | None = None
                ) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``/``attention_mask`` for a batch of conversations, generation prompt appended; with
    ``max_prompt_tokens``, each prompt cut from the left to fit (:func:`fit_prompts`)."""
    ids, _ = fit_prompts(chat_ids(tokenizer, conversations), max_prompt_tokens, tokenizer.bos_token_id)
    return left_pad(ids, pad_id_of(tokenizer))


def eos_ids(model, tokenizer) -> list[int]:
    """The ids that end a row: the model's generation config's (Llama 3.1 lists three) plus the tokenizer's EOS,
    TRL 1.16's rule for the trained policy's rollouts (``RLOOTrainer.eos_token_ids``), so a model's rewrites and
    answers stop at the same tokens in training and in evaluation, on both engines."""
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    out = [] if eos is None else [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in out:
        out.append(int(tokenizer.eos_token_id))
    return out


# Generation-config fields that make ``generate`` add logits processors of its own; the compiled engine does not
# reproduce them, so a model that sets one is refused rather than sampled differently.
_UNSUPPORTED = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                "encoder_repetition_penalty": 1.0, "min_length": 0, "min_new_tokens": None, "bad_words_ids": None,
                "suppress_tokens": None, "begin_suppress_tokens": None, "forced_bos_token_id": None,
                "forced_eos_token_id": None, "min_p": None, "typical_p": 1.0, "epsilon_cutoff": 0.0,
                "eta_cutoff": 0.0, "sequence_bias": None, "top_h": None}


def _check_generation_config(model) -> None:
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


def _step_fn(model, compiled: bool) -> Callable:
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
def decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, sampling: Sampling, eos: list[int],
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


def _batches(lengths: list[int], batch_size: int, bucket: bool) -> list[list[int]]:
    """Index batches; with ``bucket`` the indices are sorted by prompt token length first (stable)."""
    order = list(range(len(lengths)))
    if bucket and len(lengths) > batch_size:
        order.sort(key=lambda i: lengths[i])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


@torch.inference_mode()
def generate_chat(
    model,
    tokenizer,
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
    for idx in tqdm(batches, desc=desc, disable=desc is None or len(batches) < 2, leave=False):
        enc = {k: v.to(device) for k, v in left_pad([ids[i] for i in idx], pad_id).items()}
        if engine.engine == "hf":
            prompt_len = enc["input_ids"].shape[1]
            extra = {"logits_processor": logits_processor(prompt_len)} if logits_processor is not None else {}
            out = model.generate(**enc, **sampling.generate_kwargs(), pad_token_id=pad_id, eos_token_id=eos or None,
                                 **extra)
            new_tokens = out[:, prompt_len:]
        else:
            new_tokens = decode(model, enc["input_ids"], enc["attention_mask"], sampling, eos, pad_id,
                                compiled).tokens
        for i, text in zip(idx, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
            outputs[i] = text.strip()
    return outputs  # type: ignore[return-value]
