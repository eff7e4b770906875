"""The Bradley–Terry reward on a frozen sentence encoder (``reward=bt_minilm``, ``reward=tiny``).

Trained by the suite itself with the paper's loss (eq. 1), −E log σ(r(x, y_chosen) − r(x, y_rejected)), on the
train split's preference pairs. r is a small MLP on frozen sentence embeddings of the prompt and the answer,
[e(x), e(y), e(x)⊙e(y)]: the product term lets the reward depend on whether y answers *this* x, which is what
keeps a prompter from drifting off the user's question. Trained once (seconds) and cached.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alignpro.config.schema import BTFitConfig, RewardConfig
from alignpro.models.assets import resolve_model
from alignpro.models.cache import build_once, cache_dir, fingerprint


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
        """One unit-norm embedding per text, in order. Each distinct text is encoded once, in batches of similar
        token length: a batch is padded to its longest text, so mixing a 20-token prompt with a 250-token answer
        would spend most of the encoder's work on padding (a reward fit repeats every prompt and answer, and
        answers vary ten-fold in length)."""
        unique = list(dict.fromkeys(texts))
        if not unique:
            return torch.zeros(0, self.dim)
        ids = self.tokenizer(unique, truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(unique)), key=lambda i: -len(ids[i]))
        out = torch.zeros(len(unique), self.dim)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            b = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt").to(self.device)
            if b["input_ids"].shape[1] == 0:  # only empty texts, and a tokenizer that adds no special tokens
                continue
            h = self.model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
            out[rows] = nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1), dim=-1).float().cpu()
        index = {text: i for i, text in enumerate(unique)}
        return out[[index[t] for t in texts]]


def rejected_answers(record: dict) -> list[str]:
    """The answers a record ranks below its chosen one: ``rejected`` and, where the dataset has it
    (``dataset=context``), ``rejected_other``: the same content in every other form, so the reward learns the form."""
    if not record.get("chosen"):
        return []
    return [a for a in (record.get("rejected"), record.get("rejected_other")) if a]


def preference_pairs(records: list[dict], offtopic: bool, seed: int) -> list[tuple[str, str, str]]:
    """(x, y_chosen, y_rejected) triples, one per rejected answer; with ``offtopic`` also (x, chosen, another
    prompt's chosen), so the reward learns that a good answer to a different question is a bad answer to this one."""
    pairs = [(r["prompt"], r["chosen"], y) for r in records for y in rejected_answers(r)]
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


def train_bt_head(enc: SentenceEncoder, train: list[tuple], heldout: list[tuple],
                  cfg: BTFitConfig, heldout_kinds: list | None = None) -> tuple[BTHead, dict]:
    """Fit the BT head on cached embeddings (full-batch AdamW); returns the head and its held-out pairwise accuracy,
    also per kind (``heldout_accuracy_by_kind``) where ``heldout_kinds`` labels the held-out pairs."""
    def embed(pairs):  # one encode call: a text in several pairs or roles is encoded once
        return enc.encode([text for column in zip(*pairs, strict=True) for text in column]).split(len(pairs))

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
            if heldout_kinds and any(k is not None for k in heldout_kinds):
                right = (head(hu, hc) > head(hu, hr)).tolist()
                stats["heldout_accuracy_by_kind"] = {
                    str(kind): sum(ok for ok, k in zip(right, heldout_kinds, strict=True) if k == kind)
                    / heldout_kinds.count(kind) for kind in dict.fromkeys(heldout_kinds)}
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


def build_bt_reward(cfg: RewardConfig, train: list[dict], heldout: list[dict], device: str = "cpu") -> BTEncoderReward:
    """Load the encoder, then load the trained head from the cache or train it (and cache it)."""
    path = resolve_model(cfg.source, cfg.model_id, role="reward")
    enc = SentenceEncoder(path, cfg.max_length, device=device)
    fit = cfg.fit
    train_pairs = preference_pairs(train, fit.offtopic_pairs, fit.seed)
    held_pairs = preference_pairs(heldout, False, fit.seed)
    if not train_pairs:
        raise ValueError("the BT reward model needs preference pairs (chosen and rejected) in the train split; this "
                         "dataset has none. Pick a dataset with pairs or a pretrained reward (reward=rm_gemma_2b).")
    key = fingerprint(path, enc.model.num_parameters(), dict(fit), train_pairs, held_pairs)
    target = cache_dir() / "reward" / f"{cfg.name}-{key}"
    trained: dict = {}

    def build(tmp: Path) -> None:
        kinds = [r.get("kind") for r in heldout for _ in rejected_answers(r)]  # one per held-out pair
        head, stats = train_bt_head(enc, train_pairs, held_pairs, fit, kinds)
        torch.save(head.state_dict(), tmp / "head.pt")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2))  # last: the entry's ready file
        trained.update(head=head, stats=stats)

    build_once(target, build, ready="stats.json")
    if trained:
        head, stats = trained["head"], {**trained["stats"], "cached": False}
    else:  # in the cache already, or fitted by another job while this one waited for the lock
        head = BTHead(enc.dim, fit.hidden)
        head.load_state_dict(torch.load(target / "head.pt"))
        head.eval()
        stats = {**json.loads((target / "stats.json").read_text()), "cached": True}
    stats["cache_dir"] = str(target)
    return BTEncoderReward(enc, head, stats)


