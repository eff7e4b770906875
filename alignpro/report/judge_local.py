"""A local judge model (``judge.backend: hf``): a causal LM as the judge's chat backend, with an optional score-line
constraint (``judge.constrain_scores``).

Why the constraint: a small local judge (SmolLM2-135M) follows the prompt's format so rarely that every verdict
comes back unparseable and nothing can be measured.
The standard remedy is constrained decoding: :class:`ScoreLineProcessor` masks, at every step, each token whose
decoded text would stop the answer from being a prefix of ``^(10|[1-9]) (10|[1-9])\n`` (the paper's "two scores
separated by a space" line), and allows only end-of-sequence once the line is complete. The model still chooses
the scores (greedy: the most likely valid pair; retries sample), only the format is forced; the explanation the
prompt asks for on the next line is not generated because nothing here reads it. The constraint works on the
decoded text of candidate tokens (:class:`ScoreLineVocab`), so it fits any tokenizer. A served API cannot be
constrained this way, so ``constrain_scores: true`` with ``openai_api`` is refused (by alignpro.config.validate) rather
than
silently ignored.
Constrained answers are cached under keys of their own (the grammar's name is part of the key); free answers
are cached under keys without a grammar name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from alignpro.config.schema import SCORE_LINE_MAX_TOKENS
from alignpro.models.chat import eos_ids
from alignpro.models.generation import generate_chat
from alignpro.models.sampling import Sampling

log = logging.getLogger("alignpro.report.judge")

# The constrained first line: exactly ``^(10|[1-9]) (10|[1-9])\n``.
# The constrained first line (hf backend, ``constrain_scores``): exactly ``^(10|[1-9]) (10|[1-9])\n``.
SCORE_LINE_CONSTRAINT = "score_line_v1"  # its name in the cache key: rename it whenever the grammar below changes
SCORE_LINES = frozenset(f"{a} {b}\n" for a in range(1, 11) for b in range(1, 11))
SCORE_LINE_PREFIXES = frozenset(line[:k] for line in SCORE_LINES for k in range(len(line) + 1))
_SCORE_CHARS = frozenset("0123456789 \n")


class ScoreLineVocab:
    """The tokens of one tokenizer that can appear in a score line, by their decoded text.

    Only tokens made entirely of digits, spaces and newlines can ever extend a score line, so they are found once
    (a few hundred ms for a 50k vocabulary) and the allowed set of each line prefix is memoised: a score line has
    only a few dozen prefixes. Each token is decoded after an anchor token and the anchor's text removed, because
    SentencePiece-style tokenizers drop a token's leading space when it is decoded alone (``▁7`` is " 7" mid-text
    but "7" on its own); byte-fragment and special tokens decode to text outside the alphabet and drop out."""

    def __init__(self, tokenizer, stop_ids: Iterable[int]):
        self.stop_ids = sorted({int(i) for i in stop_ids})
        if not self.stop_ids:
            raise ValueError("constrained judging needs an end-of-sequence token to stop after the score line; "
                             f"tokenizer '{tokenizer.name_or_path}' and the model's generation config define none")
        anchor = tokenizer.encode("a", add_special_tokens=False)
        base = tokenizer.decode(anchor, clean_up_tokenization_spaces=False)
        texts = tokenizer.batch_decode([[*anchor, i] for i in range(len(tokenizer))],
                                       clean_up_tokenization_spaces=False)
        # token id -> its text, for the tokens that could be part of a score line (never a stop token)
        self.pieces: dict[int, str] = {
            i: t[len(base):] for i, t in enumerate(texts)
            if t.startswith(base) and len(t) > len(base) and set(t[len(base):]) <= _SCORE_CHARS
            and i not in self.stop_ids}
        self._allowed: dict[str, list[int]] = {}
        missing = [c for c in "0123456789 \n" if c not in self.pieces.values()]
        if missing:  # byte-level and SentencePiece vocabularies always have them; a gap could strand a line
            log.warning("tokenizer '%s' has no single-character token for %s: some score lines cannot be written",
                        tokenizer.name_or_path, ", ".join(map(repr, missing)))

    def text_of(self, ids: Sequence[int]) -> str | None:
        """The score-line text that ``ids`` (generated tokens) spell, or None once one of them is not a score-line
        token (the row has stopped: end-of-sequence, then padding)."""
        parts = [self.pieces.get(i) for i in ids]
        return None if None in parts else "".join(parts)  # type: ignore[arg-type]

    def allowed(self, text: str | None) -> list[int]:
        """Token ids that may follow the generated ``text``: those keeping it a prefix of a score line, or only the
        stop tokens once the line is complete (or the row has stopped, or — never under the constraint — the text
        left the grammar; stop rather than mask every token, which would make sampling divide by zero)."""
        if text is None or text not in SCORE_LINE_PREFIXES or text in SCORE_LINES:
            return self.stop_ids
        if text not in self._allowed:
            ids = [i for i, p in self.pieces.items() if text + p in SCORE_LINE_PREFIXES]
            self._allowed[text] = ids or self.stop_ids
        return self._allowed[text]


class ScoreLineProcessor(LogitsProcessor):
    """Masks (−inf) every token that would break the score line, for one ``generate`` call whose prompts (left
    padded) are ``prompt_len`` tokens long. It runs before temperature / top-k / top-p (transformers applies custom
    processors first), so a sampled retry draws among valid tokens only and top-k counts valid tokens."""

    def __init__(self, vocab: ScoreLineVocab, prompt_len: int):
        self.vocab = vocab
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        keep = torch.zeros_like(scores, dtype=torch.bool)
        for row, ids in enumerate(input_ids[:, self.prompt_len:].tolist()):
            allowed = [i for i in self.vocab.allowed(self.vocab.text_of(ids)) if i < scores.shape[-1]]
            keep[row, allowed] = True
        return scores.masked_fill(~keep, float("-inf"))


@dataclass
class HFChat:
    """A local causal LM as a chat backend; ``generated`` counts the conversations it answered.

    Answers come from :func:`alignpro.models.generation.generate_chat`; ``constrain_scores`` hands it the score-line
    grammar
    (see the module docstring), so each answer is exactly one score line; without it the model writes freely, as
    the paper's GPT-4 judge did."""

    model: Any
    tokenizer: Any
    batch_size: int = 8
    constrain_scores: bool = False
    generated: int = 0
    _vocab: ScoreLineVocab | None = field(default=None, init=False, repr=False)

    @property
    def constraint(self) -> str | None:
        """The name of the grammar answers are decoded under (None: free text); part of the judge's cache key."""
        return SCORE_LINE_CONSTRAINT if self.constrain_scores else None

    def score_vocab(self) -> ScoreLineVocab:
        """The tokenizer's score-line tokens, found on first use; generation stops at the model's own EOS ids."""
        if self._vocab is None:
            eos = eos_ids(self.model, self.tokenizer)
            if self.tokenizer.eos_token_id is not None:
                eos.append(self.tokenizer.eos_token_id)
            self._vocab = ScoreLineVocab(self.tokenizer, eos)
        return self._vocab

    def grammar(self) -> Callable[[int], LogitsProcessorList] | None:
        """With ``constrain_scores``, the processors a batch is decoded under (see :class:`ScoreLineProcessor`),
        given the batch's padded prompt length; else None (free text)."""
        if not self.constrain_scores:
            return None
        vocab = self.score_vocab()
        return lambda prompt_len: LogitsProcessorList([ScoreLineProcessor(vocab, prompt_len)])

    def complete(self, conversations: list[list[dict]], sampling: Sampling, desc: str | None = None,
                 on_answer: Callable[[int, str], None] | None = None) -> list[str]:
        if self.constrain_scores and sampling.max_new_tokens < SCORE_LINE_MAX_TOKENS:
            raise ValueError(f"max_new_tokens={sampling.max_new_tokens} cannot hold a constrained score line: it "
                             f"takes up to {SCORE_LINE_MAX_TOKENS} tokens (\"10 10\\n\"), and a cut line can "
                             "misread (\"10 1\" of \"10 10\")")
        out: list[str] = []
        starts = range(0, len(conversations), self.batch_size)
        for start in tqdm(starts, desc=desc, disable=desc is None or len(starts) < 2, leave=False):
            convs = conversations[start: start + self.batch_size]
            batch = generate_chat(self.model, self.tokenizer, convs, sampling, self.batch_size,
                                  logits_processor=self.grammar())
            self.generated += len(batch)
            for i, text in enumerate(batch, start):
                if on_answer is not None:
                    on_answer(i, text)
            out.extend(batch)
        return out
