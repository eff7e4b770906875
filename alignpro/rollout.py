"""The generation engine shared by the prompter (evaluation rewrites), the frozen model and the RLHF oracle.

One function, :func:`generate_chat`: chat-format each conversation with the model's own template, left-pad,
generate in batches, decode only the new tokens. Sampling parameters mean exactly what they mean in
``transformers.generate`` (the paper's evaluation sampling is temperature 1.5, top_p 0.6, top_k 20; D8).
The faster engines of the rollout issue plug in behind this same function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Sampling:
    """How to draw tokens. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

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


def chat_inputs(tokenizer, conversations: list[list[dict]]) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``/``attention_mask`` for a batch of conversations, generation prompt appended."""
    if tokenizer.chat_template is None:
        raise ValueError(
            f"tokenizer '{tokenizer.name_or_path}' has no chat template; set one (e.g. from trl/chat_templates) "
            "before using it as a prompter or frozen model."
        )
    tokenizer.padding_side = "left"  # decoder-only generation needs the new tokens flush right
    return tokenizer.apply_chat_template(
        conversations, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
    )


@torch.inference_mode()
def generate_chat(
    model,
    tokenizer,
    conversations: list[list[dict]],
    sampling: Sampling,
    batch_size: int = 8,
    desc: str | None = None,
) -> list[str]:
    """Answer each conversation; returns the decoded new text (special tokens stripped), one string per input."""
    outputs: list[str] = []
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    starts = range(0, len(conversations), batch_size)
    for start in tqdm(starts, desc=desc, disable=desc is None or len(starts) < 2, leave=False):
        enc = chat_inputs(tokenizer, conversations[start : start + batch_size])
        enc = {k: v.to(device) for k, v in enc.items()}
        out = model.generate(**enc, **sampling.generate_kwargs(), pad_token_id=pad_id)
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        outputs.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return outputs
