"""Shared fixtures: Hydra composition, tiny in-process models, and the real offline assets (session-scoped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_API_KEY", None)  # tests never talk to the W&B service
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose_raw(*overrides: str):
    """The config Hydra hands ``alignpro.train`` for ``<overrides>`` (without its runtime block), untyped."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))


def compose(*overrides: str):
    """The config a run works with: :func:`compose_raw` typed by the schema (alignpro.config.rules.typed)."""
    from alignpro.config.rules import typed
    from alignpro.config.schema import Config

    return typed(compose_raw(*overrides), Config)


@pytest.fixture(scope="session")
def tiny_lm():
    """(model, tokenizer) of the tiny random Llama built in-process (cached on disk by alignpro.models.assets)."""
    from alignpro.models.assets import load_causal_lm, tiny_model_dir

    return load_causal_lm(str(tiny_model_dir("causal_lm")), "float32", "cpu")


@pytest.fixture(scope="session")
def lively_lm(tiny_lm):
    """tiny_lm's architecture with larger random weights: tiny_lm's greedy output is one token repeated, which would
    let a broken decode loop pass; these weights give varied, row-dependent continuations."""
    import copy

    import torch
    from transformers import LlamaForCausalLM

    model, tok = tiny_lm
    cfg = copy.deepcopy(model.config)
    cfg.initializer_range = 0.2
    torch.manual_seed(0)
    lively = LlamaForCausalLM(cfg).eval()
    lively.generation_config = copy.deepcopy(model.generation_config)
    return lively, tok


@pytest.fixture(scope="session")
def embedded_splits():
    from alignpro.data.preferences import load_splits

    return load_splits(compose().dataset)


@pytest.fixture(scope="session")
def tiny_reward(embedded_splits):
    from alignpro.models.reward import build_reward

    return build_reward(compose("reward=tiny").reward, embedded_splits.train, embedded_splits.heldout)


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory):
    """A real OpenAI-compatible server: ``transformers serve`` on SmolLM2-135M-Instruct (CPU, one thread), started
    once per session on a free localhost port (tests/server.py)."""
    from alignpro.models.assets import AssetError, export_smollm2
    from tests.server import missing_serve_packages, transformers_serve

    missing = missing_serve_packages()
    if missing:
        pytest.skip(f"transformers serve needs {', '.join(missing)}: pip install -e '.[dev]' (transformers[serving])")
    try:
        model_dir = export_smollm2()
    except AssetError as err:
        pytest.skip(f"SmolLM2 asset unavailable: {err}")
    with transformers_serve(model_dir, tmp_path_factory.mktemp("transformers-serve")) as server:
        yield server


class RecordingReward:
    """A reward with a known rule, r = len(y), that records what it was asked to score: for checking what a reward
    function hands the reward model (which prompt, which answer), not a model."""

    def __init__(self):
        self.calls = []

    def score(self, prompts, responses):
        self.calls.append((list(prompts), list(responses)))
        return [float(len(r)) for r in responses]
