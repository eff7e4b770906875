"""What a generation call is given besides its conversations: how to draw tokens (:class:`Sampling`) and how many
prompt tokens fit beside the answer in a model's context (the one left cut, :func:`keep_tail`).

Torch-free at import, so the rollout core, the evaluation and the reward models' input cut can share these rules
without loading the generation engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alignpro.run.errors import BadInput

if TYPE_CHECKING:
    from transformers import LogitsProcessorList


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
        """These settings as ``model.generate`` keywords (the hf engine)."""
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
        the same no-op conditions (temperature 1, top_k 0, top_p 1 add nothing): the compiled engine's sampling."""
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        from alignpro.models.decode import TopKTopPLogitsWarper

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


# -- fitting prompts to a model's context ---------------------------------------------------------------------------

def keep_tail(ids: list[int], max_length: int, bos_id: int | None) -> list[int]:
    """Left truncation that keeps a leading BOS: the BOS plus the last ``max_length − 1`` tokens. The one cut of
    an over-long input, for generation prompts (:func:`fit_prompts`) and reward-model inputs
    (alignpro/models/reward_hf.py):
    the end is kept because the chat template puts the generation prompt there, and a reward model pools on it."""
    if len(ids) <= max_length:
        return ids
    head = ids[:1] if bos_id is not None and ids[:1] == [bos_id] else []
    return head + ids[len(ids) - (max_length - len(head)) :]


def context_length(model: Any) -> int | None:
    """The model's context in tokens (``max_position_embeddings`` of its text config), or None when it sets none."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    n = getattr(text, "max_position_embeddings", None)
    return int(n) if n else None


def prompt_budget(model: Any, max_new_tokens: int) -> int | None:
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
