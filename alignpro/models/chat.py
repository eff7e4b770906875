"""Conversations as a model's input: every prompt is a chat (:func:`chat`), put in the model's own chat template with
the generation prompt appended, cut to fit its context and left-padded into a batch; :func:`eos_ids` says where a
row ends. Shared by both generation engines and by the tests that compare them.
"""

from __future__ import annotations

from typing import Any

import torch

from alignpro.models.sampling import fit_prompts


def chat(user: str, system: str | None = None) -> list[dict]:
    """One conversation: an optional system turn, then the user turn (every model's input is built here)."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def chat_ids(tokenizer: Any, conversations: list[list[dict]]) -> list[list[int]]:
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


def pad_id_of(tokenizer: Any) -> int:
    """The id batches are padded with: the tokenizer's pad, else its EOS (masked either way)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def chat_inputs(tokenizer: Any, conversations: list[list[dict]], max_prompt_tokens: int | None = None
                ) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``/``attention_mask`` for a batch of conversations, generation prompt appended; with
    ``max_prompt_tokens``, each prompt cut from the left to fit (:func:`alignpro.models.sampling.fit_prompts`)."""
    ids, _ = fit_prompts(chat_ids(tokenizer, conversations), max_prompt_tokens, tokenizer.bos_token_id)
    return left_pad(ids, pad_id_of(tokenizer))


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a row: the model's generation config's (Llama 3.1 lists three) plus the tokenizer's EOS,
    TRL 1.16's rule for the trained policy's rollouts (``RLOOTrainer.eos_token_ids``), so a model's rewrites and
    answers stop at the same tokens in training and in evaluation, on both engines."""
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    out = [] if eos is None else [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in out:
        out.append(int(tokenizer.eos_token_id))
    return out
