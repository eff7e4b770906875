"""Pretrained sequence-classification reward models (``reward=rm_gemma_2b``, the paper's RM, or
``reward=hf_classifier`` for any such RM on the hub or in a local folder).

The (x, y) conversation is rendered with the RM tokenizer's own chat template (TRL's stored copy of the family's
template as fallback), exactly one BOS, left truncation, raw logit of label 0 (no sigmoid): the RM-Gemma-2B model
card's calling convention, reproduced without the card's ``pipeline`` so that it batches (the pipeline scores one
text at a time in the card).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from alignpro.config.schema import RewardConfig
from alignpro.models.assets import hub_access, resolve_model
from alignpro.models.sampling import keep_tail  # the project's one left cut (also for generation prompts)

CHAT_TEMPLATE_DIR = ("trl", "chat_templates")  # TRL ships the original templates of the common model families


def chat_template_names() -> list[str]:
    """Names accepted by ``reward.fallback_chat_template``: the ``*.jinja`` files TRL ships (gemma, llama3_1, …)."""
    from importlib.resources import files

    root = files(CHAT_TEMPLATE_DIR[0]).joinpath(CHAT_TEMPLATE_DIR[1])
    return sorted(f.name[: -len(".jinja")] for f in root.iterdir() if f.name.endswith(".jinja"))


def fallback_chat_template(name: str) -> str:
    """The text of TRL's stored template ``name`` (e.g. ``gemma``: RM-Gemma-2B's template, verbatim)."""
    from importlib.resources import files

    valid = chat_template_names()
    if name not in valid:
        raise ValueError(f"reward.fallback_chat_template='{name}' is not one of TRL's stored chat templates; "
                         f"valid: {', '.join(valid)}")
    return files(CHAT_TEMPLATE_DIR[0]).joinpath(CHAT_TEMPLATE_DIR[1], f"{name}.jinja").read_text(encoding="utf-8")


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer(text)`` prepends the BOS id by itself (Gemma's and Llama's tokenizers do; Qwen's has no
    BOS at all). Probed rather than read from a flag, because transformers 5 tokenizers keep this in the
    ``tokenizer.json`` post-processor, whose form varies by family."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def require_one_label(num_labels: int, model: str) -> None:
    """A Bradley–Terry reward model outputs one logit; anything else is refused with the model's name."""
    if num_labels != 1:
        raise ValueError(f"reward model '{model}' has num_labels={num_labels}; a reward model outputs one logit "
                         "(num_labels=1). A classifier with several labels is not a Bradley-Terry reward.")


@dataclass
class HFClassifierReward:
    """r(x, y) = the raw logit of a sequence-classification reward model on the chat-formatted (x, y) pair.

    Exactly the RM-Gemma-2B model card's convention (docs/datasets-models.md §7), which is also the generic one for
    Bradley–Terry RMs on the hub:

    * the conversation ``[user: x, assistant: y]`` (no system turn, D5) rendered with the RM tokenizer's chat
      template, without a generation prompt;
    * exactly one BOS: when the tokenizer adds BOS itself (Gemma, Llama), the template's BOS string is stripped
      from the text, as the card does; when it does not, the text keeps the template's BOS (decided once by
      :func:`tokenizer_adds_bos`);
    * truncation from the left at ``max_length``, keeping the BOS (:func:`keep_tail`);
    * batches right-padded with ``config.pad_token_id`` set: the classifier pools the rightmost non-pad token, and a
      causal model's real tokens never attend to right padding, so a batch scores exactly as one-by-one;
    * the raw ``logits[:, 0]`` in float32: no sigmoid (the pipeline applies one to ``num_labels == 1`` models unless
      told ``function_to_apply="none"``), because the BT reward is the logit itself.
    """

    model: Any
    tokenizer: Any
    max_length: int
    batch_size: int = 8
    stats: dict | None = None

    def __post_init__(self) -> None:
        require_one_label(self.model.config.num_labels, self.model.config.name_or_path)
        if self.max_length < 2:
            raise ValueError(f"reward.max_length={self.max_length} is too small: BOS plus at least one token")
        tok = self.tokenizer
        if tok.chat_template is None:
            raise ValueError(f"reward tokenizer '{tok.name_or_path}' has no chat template; set "
                             f"reward.fallback_chat_template (valid: {', '.join(chat_template_names())})")
        if tok.pad_token_id is None:
            # The checkpoint's own pad id if it has one, else eos (what TRL does for reward models). With pad == eos
            # a trailing eos is skipped by the classifier's pooling, exactly as in TRL.
            cfg_pad = self.model.config.get_text_config().pad_token_id
            pad = tok.convert_ids_to_tokens(cfg_pad) if cfg_pad is not None else tok.eos_token
            if pad is None:
                raise ValueError(f"reward tokenizer '{tok.name_or_path}' defines neither a pad nor an eos token")
            tok.pad_token = pad
        # The classifier pools on "rightmost token != config.pad_token_id": it must be the id we pad with.
        self.model.config.get_text_config().pad_token_id = tok.pad_token_id
        tok.padding_side = "right"
        tok.truncation_side = "left"
        self.adds_bos = tokenizer_adds_bos(tok)

    def render(self, prompt: str, response: str) -> str:
        """The conversation in the RM's chat template; without the BOS string when the tokenizer adds it back."""
        conv = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        text = self.tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=False)
        bos = self.tokenizer.bos_token
        if self.adds_bos and bos:
            while text.startswith(bos):
                text = text[len(bos) :]
        return text

    def encode(self, prompts: list[str], responses: list[str]) -> list[list[int]]:
        """Token ids the RM reads for each pair: rendered, one BOS, left-truncated to ``max_length``; unpadded."""
        if len(prompts) != len(responses):
            raise ValueError(f"score() got {len(prompts)} prompts but {len(responses)} responses")
        texts = [self.render(p, r) for p, r in zip(prompts, responses, strict=True)]
        if not texts:
            return []
        ids = self.tokenizer(texts, verbose=False)["input_ids"]  # untruncated: keep_tail truncates, BOS kept
        return [keep_tail(x, self.max_length, self.tokenizer.bos_token_id) for x in ids]

    @torch.no_grad()
    def score(self, prompts: list[str], responses: list[str], desc: str | None = "reward") -> list[float]:
        ids = self.encode(prompts, responses)
        device = next(self.model.parameters()).device
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch: less padding
        out = [0.0] * len(ids)
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc=desc, disable=desc is None or len(starts) < 2, leave=False):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, padding=True, return_tensors="pt")
            logits = self.model(**batch.to(device)).logits[:, 0].float()  # raw logit of label 0: no sigmoid
            for i, v in zip(idx, logits.tolist(), strict=True):
                out[i] = v
        return out


def build_hf_classifier_reward(cfg: RewardConfig, device: str = "cpu") -> HFClassifierReward:
    """Load a sequence-classification RM from ``reward.model_id`` (a hub id, or a local folder with ``source:
    hub``) and its tokenizer, with TRL's stored template as fallback when the tokenizer ships none."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from alignpro.models.assets import resolve_dtype

    path = resolve_model(cfg.source, cfg.model_id, role="reward")
    with hub_access(path, "reward"):  # a file the cache lacks offline: one AssetError naming reward.model_id
        require_one_label(AutoConfig.from_pretrained(path).num_labels, path)  # before gigabytes of weights load
        tok = AutoTokenizer.from_pretrained(path)
    template = "tokenizer"
    if tok.chat_template is None:
        name = cfg.fallback_chat_template
        if not name:
            raise ValueError(f"reward tokenizer '{path}' has no chat template and reward.fallback_chat_template is "
                             f"null; set it to one of TRL's stored templates: {', '.join(chat_template_names())}")
        tok.chat_template = fallback_chat_template(name)
        template = f"trl:{name}"
    with hub_access(path, "reward"):
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=resolve_dtype(cfg.dtype, device))
    model = model.to(device).eval().requires_grad_(False)
    rm = HFClassifierReward(model, tok, cfg.max_length, cfg.batch_size)
    rm.stats = {"model": path, "num_parameters": model.num_parameters(), "chat_template": template,
                "tokenizer_adds_bos": rm.adds_bos, "max_length": cfg.max_length, "dtype": str(model.dtype)}
    return rm


