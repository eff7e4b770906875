"""The LLM judge of the paper's win rates (Table 1; D9): pairwise, the paper's prompt verbatim, both orders.

* **Prompt and parsing** – the paper's judge prompt verbatim, and the two scores read from the answer's
  first line: :mod:`alignpro.report.judge_prompt`.
* **Both orders (D9)** – every pair is judged twice, A as Assistant 1 and then B as Assistant 1; the second
  verdict's scores are mapped back to (A, B) before anything else sees them. Averaging the two verdicts, the
  bootstrap intervals and position consistency are :func:`alignpro.report.statistics.win_tie_loss`'s job; this module
  produces the per-order outcomes (+1 A better, 0 tie, −1 B better, None invalid).
* **Retries** – an unparseable answer (no two scores in 1–10 on its first line) is asked again, up to
  ``max_attempts`` in all, and if it never parses the order is **invalid** (None): reported, never scored as a tie.
  A retry of a greedy judge would repeat itself, so retries sample at ``retry_temperature`` when the configured
  temperature is 0.
* **Cache** – every judge answer is stored on disk under ``cache_dir()/judge`` keyed by a hash of (backend, model,
  messages, sampling, attempt number): re-running the same judging makes no backend call at all, and the attempt
  number keeps the sampled retries of one order distinct. One JSON file per key, written atomically (temp file
  + rename), so concurrent jobs can share the cache: the worst case is the same answer computed twice.
* **Backends** – ``openai_api``: :class:`alignpro.models.api.ChatClient` (GPT-4 as in the paper, or any served model;
  concurrency, retries and counted transport failures live there); ``hf``: a local causal LM through
  :func:`alignpro.models.generation.generate_chat`.
* **A backend that fails for good** (a judge server that died: :class:`alignpro.run.errors.RunFault`) never turns into
  invalid verdicts or ties: the answers received so far are cached as they arrive, the backend is not asked again
  by this judge, and :meth:`Judge.judge_pairs` raises :class:`JudgeIncomplete` with every pair's record and the
  indices of the pairs that lack a verdict. Judging the same pairs again asks the backend for those alone.
* **Constrained score line** (``constrain_scores``, ``backend: hf`` only): see :mod:`alignpro.report.judge_local`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from alignpro.config.schema import JudgeConfig
from alignpro.models.api import ChatClient
from alignpro.models.assets import load_causal_lm, resolve_model
from alignpro.models.cache import cache_dir
from alignpro.models.sampling import Sampling
from alignpro.report.judge_local import HFChat
from alignpro.report.judge_prompt import judge_messages, outcome, parse_scores
from alignpro.run.errors import RunFault

log = logging.getLogger("alignpro.report.judge")

ORDERS = ("ab", "ba")  # ab: A is Assistant 1; ba: B is Assistant 1 (D9)
CACHE_VERSION = 1  # bump when the key material or the stored record changes meaning


class ChatBackend(Protocol):
    """What the judge needs from a model: one answer per conversation, each also handed to ``on_answer(i, text)``
    as soon as it exists (the judge caches it then, so a crash later in the call loses nothing paid for). A backend
    that decodes under a constraint also has a ``constraint`` attribute naming it (:attr:`HFChat.constraint`); the
    judge puts it in the cache key, and a backend without one is taken to write free text."""

    def complete(self, conversations: list[list[dict]], sampling: Sampling, desc: str | None = None,
                 on_answer: Callable[[int, str], None] | None = None) -> list[str]:
        ...


class JudgeIncomplete(RunFault):
    """The backend failed for good before every pair had its verdict in both orders (a judge server that died).
    ``records`` are :meth:`Judge.judge_pairs`'s, all of them; the pairs at the indices ``missing`` lack a verdict in
    one order or both and must not be scored (neither invalid nor a tie). Every answer received before the failure
    is in the cache, so judging the same pairs again asks only for the missing ones."""

    def __init__(self, message: str, records: list[dict], missing: list[int], failure: str):
        super().__init__(message)
        self.records, self.missing, self.failure = records, missing, failure


class JudgeCache:
    """Judge answers on disk, one JSON file per content hash (``root/ab/abcdef….json``)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key(material: dict) -> str:
        return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))["text"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:  # a damaged entry is a miss, not a crash
            log.warning("judge cache entry %s unreadable (%s); judging again", key, err)
            return None

    def put(self, key: str, text: str, meta: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"text": text, **meta}, f, ensure_ascii=False)
            os.replace(tmp, path)  # atomic: a reader sees no file or a whole one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass
class Judge:
    """Pairwise judge: :meth:`judge_pairs` asks ``backend`` about every pair in both orders (D9)."""

    backend: ChatBackend
    kind: str  # "openai_api" | "hf": part of the cache key
    model_id: str  # part of the cache key
    sampling: Sampling = Sampling(512, temperature=0.0)
    max_attempts: int = 3
    retry_temperature: float = 0.7
    n_prompts: int = 100  # pairs per cell the caller should judge (the paper's 100); judge_pairs judges all given
    cache: JudgeCache | None = None
    # orders judged; requests = conversations sent to the backend; cache_hits; retries = re-asked orders; invalid
    stats: dict = field(default_factory=lambda: {"orders": 0, "requests": 0, "cache_hits": 0, "retries": 0,
                                                 "invalid": 0})
    # Why the backend failed for good, once it has: from then on answers come from the cache only (a dead server
    # would cost every later request all its retries); what the cache lacks is missing (JudgeIncomplete).
    failure: str | None = None

    def retry_sampling(self) -> Sampling:
        """Sampling of attempts 2.. : a greedy judge would only repeat itself, so it samples at retry_temperature."""
        if self.sampling.temperature > 0:
            return self.sampling
        return dataclasses.replace(self.sampling, temperature=self.retry_temperature)

    def cache_meta(self, sampling: Sampling, attempt: int) -> dict:
        """What besides the messages decides an answer: the cache key's material (also stored with each answer).
        A backend that decodes under a constraint names it (``backend.constraint``), so constrained and free
        answers never share a key; free decoding adds nothing, so earlier free (e.g. paid API) entries still hit."""
        meta = {"v": CACHE_VERSION, "backend": self.kind, "model": self.model_id,
                "sampling": dataclasses.asdict(sampling), "attempt": attempt}
        constraint = getattr(self.backend, "constraint", None)
        if constraint is not None:
            meta["constraint"] = constraint
        return meta

    def cache_key(self, conv: list[dict], sampling: Sampling, attempt: int) -> str:
        return JudgeCache.key({**self.cache_meta(sampling, attempt), "messages": conv})

    def _answers(self, convs: list[list[dict]], sampling: Sampling, attempt: int,
                 desc: str | None) -> list[str | None]:
        """The judge's texts for ``convs``: from the cache where present, the rest from the backend in one call.
        None where the backend failed for good before answering (:attr:`failure` is then set)."""
        meta = self.cache_meta(sampling, attempt)
        keys = [JudgeCache.key({**meta, "messages": c}) for c in convs]
        texts: list[str | None] = [self.cache.get(k) if self.cache else None for k in keys]
        todo = [i for i, t in enumerate(texts) if t is None]
        self.stats["cache_hits"] += len(convs) - len(todo)
        if todo and self.failure is None:
            self.stats["requests"] += len(todo)

            def keep(j: int, text: str) -> None:  # kept (and cached) as it arrives: a later failure loses nothing
                texts[todo[j]] = text
                if self.cache:
                    self.cache.put(keys[todo[j]], text, meta)

            try:
                fresh = self.backend.complete([convs[i] for i in todo], sampling, desc, keep)
            except RunFault as err:  # e.g. ChatAPIError: the server is gone; what it answered is kept above
                self.failure = " ".join(str(err).split())
                log.info("judge: the backend failed for good (%s); the remaining verdicts come from the cache "
                         "only", self.failure)
            else:
                for i, text in zip(todo, fresh, strict=True):
                    texts[i] = text
        return texts

    def judge_pairs(self, prompts: list[str], answers_a: list[str], answers_b: list[str],
                    desc: str | None = None) -> list[dict]:
        """One record per pair: ``prompt, a, b``; ``scores_ab``/``scores_ba`` as (A's score, B's score) or None;
        ``outcome_ab``/``outcome_ba`` in {+1, 0, −1} or None (invalid); ``raw_ab``/``raw_ba`` (the judge's text
        of every attempt) and ``attempts_ab``/``attempts_ba``."""
        if not len(prompts) == len(answers_a) == len(answers_b):
            raise ValueError(f"judge_pairs needs as many prompts as answers: {len(prompts)} prompts, "
                             f"{len(answers_a)} answers A, {len(answers_b)} answers B")
        records = [{"prompt": p, "a": a, "b": b, **{f"{k}_{o}": None for k in ("scores", "outcome") for o in ORDERS},
                    **{f"raw_{o}": [] for o in ORDERS}, **{f"attempts_{o}": 0 for o in ORDERS}}
                   for p, a, b in zip(prompts, answers_a, answers_b, strict=True)]
        # In order "ba" B's answer is Assistant 1's, so the parsed (Assistant 1, Assistant 2) is (B, A).
        convs = {(i, o): judge_messages(r["prompt"], *((r["a"], r["b"]) if o == "ab" else (r["b"], r["a"])))
                 for i, r in enumerate(records) for o in ORDERS}
        pending = list(convs)
        unanswered: set[tuple[int, str]] = set()  # orders the backend failed before answering: no verdict yet
        for attempt in range(1, self.max_attempts + 1):
            sampling = self.sampling if attempt == 1 else self.retry_sampling()
            if attempt > 1:
                self.stats["retries"] += len(pending)
                log.info("judge: %d verdict(s) unparseable, attempt %d/%d at temperature %g", len(pending), attempt,
                         self.max_attempts, sampling.temperature)
            texts = self._answers([convs[item] for item in pending], sampling, attempt, desc)
            still = []
            for (i, o), text in zip(pending, texts, strict=True):
                if text is None:
                    unanswered.add((i, o))
                    continue
                r = records[i]
                r[f"raw_{o}"].append(text)
                r[f"attempts_{o}"] = attempt
                scores = parse_scores(text)
                if scores is None:
                    still.append((i, o))
                    continue
                r[f"scores_{o}"] = scores if o == "ab" else (scores[1], scores[0])
                r[f"outcome_{o}"] = outcome(r[f"scores_{o}"])
            pending = still
            if not pending:
                break
        self.stats["orders"] += len(convs) - len(unanswered)
        self.stats["invalid"] += len(pending)
        if pending:
            log.warning("judge: %d of %d verdict(s) still unparseable after %d attempt(s): counted invalid, not ties",
                        len(pending), len(convs), self.max_attempts)
        if unanswered:
            missing = sorted({i for i, _ in unanswered})
            raise JudgeIncomplete(f"judge: {len(missing)} of {len(records)} pairs missing ({self.failure})", records,
                                  missing, self.failure or "")
        return records


def build_judge(cfg: JudgeConfig, device: str = "cpu", cache_root: Path | None = None) -> Judge:
    """Factory for the ``judge`` config group (conf/judge/). ``cache_root`` overrides ``cache_dir()/judge``."""
    sampling = Sampling.from_config(cfg.sampling, cfg.max_new_tokens)
    constrain = cfg.constrain_scores
    if cfg.backend == "openai_api":
        backend: ChatBackend = ChatClient.from_config(cfg)
        backend.api_key()  # fail now, before any judging, when the key's variable is not set
        model_id = cfg.model
    else:
        path = resolve_model(cfg.source, cfg.model_id, role="judge")
        model, tok = load_causal_lm(path, cfg.dtype, device)
        model.requires_grad_(False)
        backend = HFChat(model, tok, cfg.batch_size, constrain)
        model_id = f"{cfg.source}:{cfg.model_id or path}:{cfg.dtype}"
    cache = None
    if cfg.cache:
        cache = JudgeCache(cache_root if cache_root is not None else cache_dir() / "judge")
    return Judge(backend, cfg.backend, model_id, sampling, cfg.max_attempts, cfg.retry_temperature, cfg.n_prompts,
                 cache)
