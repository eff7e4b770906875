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
# One thread per test process, set before torch loads: `make test` runs two pytest workers (pytest-xdist) on the
# two cores, and the commands the tests start inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


# The slowest files first (their share of a full run, slowest first): with `--dist loadfile` a worker that takes one
# of them last would leave the other core idle at the end.
SLOW_FIRST = ["test_theory.py", "test_report.py", "test_config.py", "test_launchers.py", "test_claims.py",
              "test_bad_inputs.py", "test_assets.py", "test_train.py", "test_judge.py", "test_plan.py",
              "test_faults.py", "test_resume.py", "test_api.py", "test_numeric_edges.py", "test_gpu_check.py",
              "test_paper_path.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the order inside a file is kept


def unavailable(reason: str) -> None:
    """A package or asset a test needs is missing: a skip on a developer's machine, a failure in CI (``CI=true``),
    so CI cannot be green without it."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: a missing package or asset fails)", pytrace=False)
    pytest.skip(reason)


def shared_once(tmp_path_factory, name: str, build) -> Path:
    """``build(path)`` run once per test session, even across pytest-xdist workers (the first to ask builds, under a
    file lock; the others wait and reuse), for work several test modules read but none changes."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base temp dirs share this parent
    path, done = root / "shared" / name, root / "shared" / f"{name}.done"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not done.exists():
            build(path)
            done.touch()
    return path


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
def smollm2_dir():
    """SmolLM2-135M-Instruct as a transformers folder, exported from its wheel (alignpro.models.assets)."""
    from alignpro.models.assets import AssetError, export_smollm2

    try:
        return export_smollm2()
    except AssetError as err:
        unavailable(f"SmolLM2 asset unavailable: {err}")


@pytest.fixture(scope="session")
def servable_smollm2(smollm2_dir):
    """:func:`smollm2_dir`, once the packages ``transformers serve`` needs are known to be installed."""
    from tests.server import missing_serve_packages

    missing = missing_serve_packages()
    if missing:
        unavailable(f"transformers serve needs {', '.join(missing)}: pip install -e '.[dev]' (transformers[serving])")
    return smollm2_dir


@pytest.fixture(scope="session")
def smollm2_server(servable_smollm2, tmp_path_factory):
    """A real OpenAI-compatible server: ``transformers serve`` on SmolLM2-135M-Instruct (CPU, one thread), started
    once per session on a free localhost port (tests/server.py)."""
    from tests.server import transformers_serve

    with transformers_serve(servable_smollm2, tmp_path_factory.mktemp("transformers-serve")) as server:
        yield server


ARMS = ["no_finetune", "base_prompter", "alignpro", "rlhf"]


@pytest.fixture(scope="session")
def arms_sweep(tmp_path_factory):
    """A real multirun of the four arms on tiny models, two seeds: the paper's comparison in miniature. Built once per
    session and read (never changed) by the report and the fault tests."""
    from tests import cli

    def build(sweep: Path) -> None:
        proc = cli.run("alignpro.train", "--multirun", "experiment=smoke", "logger=none", "trainer.max_steps=1",
                       "eval.n_prompts=6", "eval.answer_shift=false", f"method={','.join(ARMS)}", "seed=0,1",
                       f"hydra.sweep.dir={sweep}")
        assert proc.returncode == 0, proc.stderr[-3000:]

    return shared_once(tmp_path_factory, "arms_sweep", build)


class RecordingReward:
    """A reward with a known rule, r = len(y), that records what it was asked to score: for checking what a reward
    function hands the reward model (which prompt, which answer), not a model."""

    def __init__(self):
        self.calls = []

    def score(self, prompts, responses):
        self.calls.append((list(prompts), list(responses)))
        return [float(len(r)) for r in responses]
