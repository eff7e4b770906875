"""The paper's five models built from their shipped hub configs (``alignpro/models/paper_configs/``), without the hub.

Two model sources (``alignpro.models.assets``) use this module:

* ``miniature`` – the model's own config shrunk in depth and width only (:class:`Shrink`): the same class, the same
  heads : key-value-heads ratio, tied embeddings, RoPE type and θ, norms' ε, vocabulary rows, BOS/EOS/pad ids and
  generation EOS list; random fp32 weights. The paper's configs run end to end on a CPU with these.
* ``random``    – the config at full size with random bf16 weights, initialised on CUDA when there is one (GPU
  benchmarks: the real shapes, no download).

Each model is saved with a tokenizer of its family (:mod:`alignpro.models.paper_tokenizers`), and built once into the
cache (:func:`alignpro.models.cache.build_once`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alignpro.config.sources import FAMILY, REWARDS, AssetError, paper_model_id
from alignpro.models.cache import build_once, cache_dir, fingerprint
from alignpro.models.paper_tokenizers import REAL_TOKENIZERS, dist_versions, paper_tokenizer_dir

PAPER_MODELS_DIR = Path(__file__).parent / "paper_configs"
# Bump when a build below changes what it writes: the cache key includes it (and the tokenizer's, through its
# folder name).
BUILD_VERSION = 1


def config_dir(model_id: str) -> Path:
    """The shipped folder of ``model_id``'s hub ``config.json`` (and ``generation_config.json``)."""
    return PAPER_MODELS_DIR / paper_model_id(model_id).replace("/", "__")


def hub_config(model_id: str) -> dict:
    """The shipped hub ``config.json`` of ``model_id`` as a dict."""
    return json.loads((config_dir(model_id) / "config.json").read_text(encoding="utf-8"))


def hub_generation_config(model_id: str) -> dict | None:
    """The shipped ``generation_config.json`` of ``model_id`` (None for the reward model, which has none)."""
    path = config_dir(model_id) / "generation_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


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

    paper_model_id(model_id)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise AssetError(f"dtype '{dtype}' is not supported; valid: float32, bfloat16, float16")
    tok_dir = paper_tokenizer_dir(FAMILY[model_id])
    files_key = [(config_dir(model_id) / f).read_text(encoding="utf-8") for f in ("config.json",
                                                                                   "generation_config.json")
                 if (config_dir(model_id) / f).is_file()]
    key = fingerprint(BUILD_VERSION, model_id, asdict(shrink) if shrink else None, dtype, seed, files_key,
                      tok_dir.name, dist_versions("transformers"))
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
    return paper_model_dir(paper_model_id(model_id, role), MINIATURE)


def random_dir(model_id: str | None, role: str = "model", shrink: Shrink | None = None) -> Path:
    """``source: random``: ``model_id`` at full size (``shrink`` None) with random bf16 weights, initialised on CUDA
    when it is available."""
    import torch

    return paper_model_dir(paper_model_id(model_id, role), shrink, dtype="bfloat16",
                           device="cuda" if torch.cuda.is_available() else "cpu")
