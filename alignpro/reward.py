"""Reward models r(x, y) behind one interface: ``score(prompts, responses) -> list[float]``.

* :class:`BTEncoderReward` (``reward=bt_minilm``, ``reward=tiny``): a Bradley–Terry reward model trained by the
  suite itself with the paper's loss (eq. 1), −E log σ(r(x, y_chosen) − r(x, y_rejected)), on the train split's
  preference pairs. r is a small MLP on frozen sentence embeddings of the prompt and the answer,
  [e(x), e(y), e(x)⊙e(y)]: the product term lets the reward depend on whether y answers *this* x, which is what
  keeps a prompter from drifting off the user's question. Trained once (seconds) and cached.
* :class:`HFClassifierReward` (``reward=rm_gemma_2b``, the paper's RM, or ``reward=hf_classifier`` for any
  sequence-classification RM on the hub or in a local folder): the (x, y) conversation rendered with the RM
  tokenizer's own chat template (TRL's stored copy of the family's template as fallback), exactly one BOS, left
  truncation, raw logit of label 0 (no sigmoid) — the RM-Gemma-2B model card's calling convention, reproduced
  without the card's ``pipeline`` so that it batches (the pipeline scores one text at a time in the card).

Which prompt the reward sees, x (theory, default) or x′ (ablation, ``reward.prompt=rewritten``), is the episode's
choice (D5), not the reward model's.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from alignpro.assets import cache_dir, fingerprint, resolve_model


class Reward(Protocol):
    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """r(prompt_i, response_i) for each i."""


# ---- Bradley–Terry reward on a frozen sentence encoder ------------------------------------------------------------
class BTHead(nn.Module):
    """r(x, y) = MLP([u, v, u⊙v]) with u = e(x), v = e(y) unit-norm sentence embeddings."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([u, v, u * v], dim=-1)).squeeze(-1)


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Paper eq. 1: L = −E[log σ(r(x, y_u) − r(x, y_v))], y_u preferred."""
    return -nn.functional.logsigmoid(r_chosen - r_rejected).mean()


class SentenceEncoder:
    """Mean-pooled, L2-normalised embeddings from any HF encoder (the all-MiniLM-L6-v2 recipe)."""

    def __init__(self, path: str, max_length: int = 256, batch_size: int = 64, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval().requires_grad_(False)
        self.max_length, self.batch_size, self.device = max_length, batch_size, device
        self.dim = self.model.config.hidden_size

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> torch.Tensor:
        chunks = []
        for i in range(0, len(texts), self.batch_size):
            b = self.tokenizer(texts[i : i + self.batch_size], padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt").to(self.device)
            h = self.model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
            chunks.append(nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1), dim=-1).float().cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim)


def preference_pairs(records: list[dict], offtopic: bool, seed: int) -> list[tuple[str, str, str]]:
    """(x, y_chosen, y_rejected) triples; with ``offtopic`` also (x, chosen, another prompt's chosen), so the
    reward learns that a good answer to a different question is a bad answer to this one."""
    pairs = [(r["prompt"], r["chosen"], r["rejected"]) for r in records if r.get("chosen") and r.get("rejected")]
    if offtopic:
        rng = random.Random(seed)
        answers = [r["chosen"] for r in records if r.get("chosen")]
        for r in records:
            if r.get("chosen") and len(answers) > 1:
                other = rng.choice(answers)
                while other == r["chosen"]:
                    other = rng.choice(answers)
                pairs.append((r["prompt"], r["chosen"], other))
    return pairs


def train_bt_head(enc: SentenceEncoder, train: list[tuple], heldout: list[tuple], cfg) -> tuple[BTHead, dict]:
    """Fit the BT head on cached embeddings (full-batch AdamW); returns the head and its held-out pairwise accuracy."""
    def embed(pairs):
        xs, ys, zs = zip(*pairs, strict=True)
        return enc.encode(list(xs)), enc.encode(list(ys)), enc.encode(list(zs))

    torch.manual_seed(cfg.seed)
    head = BTHead(enc.dim, cfg.hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    u, c, r = embed(train)
    for _ in range(cfg.epochs):
        opt.zero_grad()
        loss = bt_loss(head(u, c), head(u, r))
        loss.backward()
        opt.step()
    head.eval()
    stats = {"train_loss": loss.item(), "n_train_pairs": len(train), "n_heldout_pairs": len(heldout)}
    with torch.no_grad():
        stats["train_accuracy"] = float((head(u, c) > head(u, r)).float().mean())
        if heldout:
            hu, hc, hr = embed(heldout)
            stats["heldout_accuracy"] = float((head(hu, hc) > head(hu, hr)).float().mean())
            stats["heldout_loss"] = float(bt_loss(head(hu, hc), head(hu, hr)))
    return head, stats


@dataclass
class BTEncoderReward:
    encoder: SentenceEncoder
    head: BTHead
    stats: dict

    @torch.no_grad()
    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"score() got {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        return self.head(self.encoder.encode(prompts), self.encoder.encode(responses)).tolist()

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm sentence embeddings (used by evaluation's answer-shift diagnostic)."""
        return self.encoder.encode(texts)


def build_bt_reward(cfg, train: list[dict], heldout: list[dict], device: str = "cpu") -> BTEncoderReward:
    """Load the encoder, then load the trained head from the cache or train it (and cache it)."""
    path = resolve_model(cfg.source, cfg.get("model_id"), role="reward")
    enc = SentenceEncoder(path, cfg.max_length, device=device)
    fit = cfg.fit
    train_pairs = preference_pairs(train, fit.offtopic_pairs, fit.seed)
    held_pairs = preference_pairs(heldout, False, fit.seed)
    if not train_pairs:
        raise ValueError("the BT reward model needs preference pairs (chosen and rejected) in the train split; this "
                         "dataset has none. Pick a dataset with pairs or a pretrained reward (reward=rm_gemma_2b).")
    key = fingerprint(path, enc.model.num_parameters(), dict(fit), train_pairs, held_pairs)
    target = cache_dir() / "reward" / f"{cfg.name}-{key}"
    head = BTHead(enc.dim, fit.hidden)
    if (target / "head.pt").is_file():
        head.load_state_dict(torch.load(target / "head.pt"))
        head.eval()
        stats = json.loads((target / "stats.json").read_text())
        stats["cached"] = True
    else:
        head, stats = train_bt_head(enc, train_pairs, held_pairs, fit)
        target.mkdir(parents=True, exist_ok=True)
        torch.save(head.state_dict(), target / "head.pt")
        (target / "stats.json").write_text(json.dumps(stats, indent=2))
        stats["cached"] = False
    stats["cache_dir"] = str(target)
    return BTEncoderReward(enc, head, stats)


# ---- pretrained sequence-classification reward models (RM-Gemma-2B and friends) ----------------------------------
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


def keep_tail(ids: list[int], max_length: int, bos_id: int | None) -> list[int]:
    """Left truncation that keeps a leading BOS: the BOS plus the last ``max_length − 1`` tokens. This is what the
    RM's training script did (``truncation_side="left"``, BOS added after truncation), so an over-long answer keeps
    its end, the part a reward model reads last and pools on."""
    if len(ids) <= max_length:
        return ids
    head = ids[:1] if bos_id is not None and ids[:1] == [bos_id] else []
    return head + ids[len(ids) - (max_length - len(head)) :]


def require_one_label(num_labels: int, model: str) -> None:
    """A Bradley–Terry reward model outputs one logit; anything else is refused with the model's name."""
    if num_labels != 1:
        raise ValueError(f"reward model '{model}' has num_labels={num_labels}; a reward model outputs one logit "
                         "(num_labels=1). A classifier with several labels is not a Bradley-Terry reward.")


@dataclass
class HFClassifierReward:
    """r(x, y) = the raw logit of a sequence-classification reward model on the chat-formatted (x, y) pair.

    Exactly the RM-Gemma-2B model card's convention (datasets-models.md §6), which is also the generic one for
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


def build_hf_classifier_reward(cfg, device: str = "cpu") -> HFClassifierReward:
    """Load a sequence-classification RM from ``reward.model_id`` (a hub id, or a local folder with ``source:
    hub``) and its tokenizer, with TRL's stored template as fallback when the tokenizer ships none."""
    from omegaconf import OmegaConf
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from alignpro.assets import resolve_dtype

    if OmegaConf.is_config(cfg) and OmegaConf.is_missing(cfg, "model_id"):
        raise ValueError(f"reward={cfg.name} needs reward.model_id: a hub id or a local folder of a sequence-"
                         "classification reward model, e.g. reward.model_id=Skywork/Skywork-Reward-Llama-3.1-8B-v0.2")
    path = resolve_model(cfg.source, cfg.get("model_id"), role="reward")
    require_one_label(AutoConfig.from_pretrained(path).num_labels, path)  # before gigabytes of weights load
    tok = AutoTokenizer.from_pretrained(path)
    template = "tokenizer"
    if tok.chat_template is None:
        name = cfg.get("fallback_chat_template")
        if not name:
            raise ValueError(f"reward tokenizer '{path}' has no chat template and reward.fallback_chat_template is "
                             f"null; set it to one of TRL's stored templates: {', '.join(chat_template_names())}")
        tok.chat_template = fallback_chat_template(name)
        template = f"trl:{name}"
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=resolve_dtype(cfg.dtype, device))
    model = model.to(device).eval().requires_grad_(False)
    rm = HFClassifierReward(model, tok, cfg.max_length, cfg.batch_size)
    rm.stats = {"model": path, "num_parameters": model.num_parameters(), "chat_template": template,
                "tokenizer_adds_bos": rm.adds_bos, "max_length": cfg.max_length, "dtype": str(model.dtype)}
    return rm


def build_reward(cfg, train: list[dict], heldout: list[dict], device: str = "cpu") -> Reward:
    """Factory for the ``reward`` config group."""
    if cfg.kind == "bt_encoder":
        return build_bt_reward(cfg, train, heldout, device)
    if cfg.kind == "hf_classifier":
        return build_hf_classifier_reward(cfg, device)
    raise ValueError(f"reward.kind='{cfg.kind}' is unknown; valid: bt_encoder, hf_classifier")
