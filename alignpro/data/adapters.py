"""Adapters: the rows of each dataset layout (UltraFeedback, HelpSteer, Orca, the shipped sets, a user's file)
mapped to the one record layout of :mod:`alignpro.data.preferences`, and the columns each adapter reads.

Adapters only map fields; they mark ties (``_tie``), the Orca card filter (``_card_ok``), the un-folded user text
(``_user``) and merged rows (``_rows``) for the filter stage, which applies the config and strips these keys."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

Record = dict  # keys listed in alignpro.data.preferences' docstring

# Layout of a local copy (dataset.path) per adapter, for error messages: the hub repo's files.
LAYOUTS = {
    "ultrafeedback": "data/<split>-00000-of-00001.parquet for train_prefs, test_prefs, ...",
    "helpsteer": "train.jsonl.gz and validation.jsonl.gz at the top level",
    "orca": "data/train-00000-of-00001.parquet",
}


def option(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg.key`` for a DictConfig or dict (or None: the adapters' defaults), ``default`` when absent or null."""
    if cfg is None:
        return default
    value = cfg.get(key)
    return default if value is None else value


def _record(prompt, chosen=None, rejected=None, system=None, chosen_score=None, rejected_score=None, source_id="",
            kind=None, rejected_other=None):
    return {
        "prompt": prompt,
        "system": system if system and system.strip() else None,  # "" (most Orca rows) means no system prompt
        "chosen": chosen,
        "rejected": rejected,
        "chosen_score": chosen_score,
        "rejected_score": rejected_score,
        "source_id": str(source_id),
        "kind": kind,  # the prompt's kind where a dataset has kinds (dataset=context): reports break results down by it
        "rejected_other": rejected_other,  # a second rejected answer (dataset=context: the third form), or None
    }


def prompt_hash(prompt: str) -> str:
    """SHA-256 hex of the prompt: UltraFeedback's own ``prompt_id`` convention, reused where the hub has no id."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def adapt_ultrafeedback(rows: Sequence[dict], cfg: Any = None) -> list[Record]:
    """HuggingFaceH4/ultrafeedback_binarized: the last message of chosen/rejected is the answer; a tie is
    ``score_chosen == score_rejected`` (the rejected answer was drawn at random and may share the top score)."""
    pf = option(cfg, "prompt_field", "prompt")
    out = []
    for i, r in enumerate(rows):
        sc, sr = r.get("score_chosen"), r.get("score_rejected")
        rec = _record(r[pf], _last_content(r["chosen"]), _last_content(r["rejected"]), chosen_score=sc,
                      rejected_score=sr, source_id=r.get("prompt_id") or i)
        rec["_tie"] = sc is not None and sc == sr
        out.append(rec)
    return out


def _last_content(messages: list[dict] | None) -> str | None:
    return messages[-1]["content"] if messages else None


def adapt_helpsteer(rows: Sequence[dict], cfg: Any = None) -> list[Record]:
    """nvidia/HelpSteer: one response per row. Rows sharing a prompt (anywhere in the split, not only consecutive)
    become one record, in order of first appearance (deterministic de-duplication); the response with the highest
    mean of ``rank_by`` ratings is chosen, the lowest rejected (first/last row among equals). A single-response
    prompt has no pair (rejected None); a group whose best and worst score are equal is a tie."""
    pf = option(cfg, "prompt_field", "prompt")
    rank_by = list(option(cfg, "rank_by", ["helpfulness"]))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[pf], []).append(r)
    out = []
    for prompt, group in groups.items():
        scores = [sum(float(r[k]) for k in rank_by) / len(rank_by) for r in group]
        order = sorted(range(len(group)), key=lambda j: -scores[j])  # stable: equal scores keep row order
        best, worst = order[0], order[-1]
        paired = len(group) > 1
        rec = _record(prompt, group[best]["response"], group[worst]["response"] if paired else None,
                      chosen_score=scores[best], rejected_score=scores[worst] if paired else None,
                      source_id=prompt_hash(prompt or ""))
        rec["_tie"] = paired and scores[best] == scores[worst]
        rec["_rows"] = len(group)
        out.append(rec)
    return out


def adapt_orca(rows: Sequence[dict], cfg: Any = None) -> list[Record]:
    """argilla/distilabel-intel-orca-dpo-pairs: ``input`` is the user prompt, ``system`` an optional system prompt.

    ``system: prepend`` folds a non-empty system prompt into the prompt text as ``"{system}\\n\\n{input}"``: the
    answers were generated and judged under it (e.g. "explain like I'm five", "think step by step"), and neither
    the RM-Gemma chat template (it rejects system turns) nor the pipeline (it passes only ``prompt``) has another
    place for it. ``system: drop`` keeps ``input`` alone. The source id is the row index in the hub split; the
    rejected score is the lower of the judge's two ``rating`` values (chosen_score is the higher one)."""
    pf = option(cfg, "prompt_field", "input")
    fold = option(cfg, "system", "prepend") == "prepend"
    out = []
    for i, r in enumerate(rows):
        user, system = r[pf], r.get("system") or ""
        prompt = f"{system}\n\n{user}" if fold and system.strip() and user and user.strip() else user
        rating = [x for x in (r.get("rating") or []) if x is not None]
        rec = _record(prompt, r["chosen"], r["rejected"], system=system, chosen_score=r.get("chosen_score"),
                      rejected_score=min(rating) if len(rating) == 2 else None, source_id=i)
        rec["_user"] = user
        rec["_tie"] = r.get("status") == "tie"
        # The dataset card's recommended subset (5,922 rows of 12,859).
        rec["_card_ok"] = (r.get("status") != "tie" and (r.get("chosen_score") or 0) >= 8
                           and not r.get("in_gsm8k_train"))
        out.append(rec)
    return out


def adapt_embedded(rows: Sequence[dict], cfg: Any = None) -> list[Record]:
    return [_record(r["prompt"], r["chosen"], r["rejected"], source_id=r["id"], kind=r.get("kind"),
                    rejected_other=r.get("rejected_other")) for r in rows]


def adapt_file(rows: Sequence[dict], cfg: Any = None) -> list[Record]:
    """A user's JSONL/CSV rows: the prompt from ``prompt_field``; chosen/rejected (optional: prompts alone train a
    prompter against a pretrained RM) from ``chosen_field``/``rejected_field``; an empty cell counts as absent."""
    pf, cf, rf, idf = (option(cfg, k) for k in ("prompt_field", "chosen_field", "rejected_field", "id_field"))
    pf = pf or "prompt"

    def text(r: dict, key: str | None) -> str | None:
        v = r.get(key) if key else None
        return v if isinstance(v, str) and v.strip() else None

    return [_record(r[pf] if isinstance(r[pf], str) else "", text(r, cf), text(r, rf),
                    source_id=r.get(idf, i) if idf else i) for i, r in enumerate(rows)]


ADAPTERS: dict[str, Callable[..., list[Record]]] = {
    "embedded": adapt_embedded,
    "file": adapt_file,
    "ultrafeedback": adapt_ultrafeedback,
    "helpsteer": adapt_helpsteer,
    "orca": adapt_orca,
}


def required_columns(cfg: Any) -> list[str]:
    """The hub columns the adapter reads under this config (a copy lacking one is a DataError)."""
    pf, adapter = cfg.prompt_field, cfg.adapter
    if adapter == "ultrafeedback":
        return [pf, "prompt_id", "chosen", "rejected", "score_chosen", "score_rejected"]
    if adapter == "helpsteer":
        return [pf, "response", *option(cfg, "rank_by", ["helpfulness"])]
    if adapter == "orca":
        return [pf, "system", "chosen", "rejected", "rating", "chosen_score", "status"] + (
            ["in_gsm8k_train"] if option(cfg, "card_filter", False) else [])
    return [pf]
