"""The paper's grid end to end on CPU: every (prompter, frozen) pair of ``experiment=paper/<cell>``, both the
Align-Pro arm and the RLHF oracle, with the paper's model classes as miniatures (alignpro/models/paper_models.py).

Only model sources, sizes and the dataset path are overridden: LoRA targets, gradient checkpointing, the dtype
policy, chat templates, pad/EOS rules and the RM convention are the cells' own. Each paper dataset's loader runs on
a small copy in the hub layout. Seven runs are in-process; one goes through the real CLI.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from alignpro.config import sources
from alignpro.models import paper_models as pm
from alignpro.models import paper_tokenizers as pt
from tests import cli
from tests.conftest import compose

pytestmark = pytest.mark.integration

# One cell per (prompter, frozen) pair; together they cover the three datasets.
CELLS = ["phi35_mini_llama31_8b_helpsteer", "phi35_mini_qwen25_7b_ultrafeedback", "qwen25_1_5b_llama31_8b_orca",
         "qwen25_1_5b_qwen25_7b_helpsteer"]
CLI_RUN = ("phi35_mini_llama31_8b_helpsteer", "alignpro")
# config name -> (model class, tokenizer family, LoRA in the cell's config)
PROMPTER = {"phi35_mini": ("Phi3ForCausalLM", "phi3_5", True), "qwen25_1_5b": ("Qwen2ForCausalLM", "qwen2_5", False)}
FROZEN = {"llama31_8b": ("LlamaForCausalLM", "llama3_1", True), "qwen25_7b": ("Qwen2ForCausalLM", "qwen2_5", True)}
LINEAR = {"Phi3ForCausalLM": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
          "LlamaForCausalLM": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
          "Qwen2ForCausalLM": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}}
N_EVAL = 4


def split_cell(cell: str) -> tuple[str, str, str]:
    prompter = next(p for p in PROMPTER if cell.startswith(p + "_"))
    rest = cell[len(prompter) + 1 :]
    frozen = next(f for f in FROZEN if rest.startswith(f + "_"))
    return prompter, frozen, rest[len(frozen) + 1 :]


# ---- small copies of the paper's datasets in the hub layout (loaders of alignpro/data/preferences.py read them as the
# hub's) ----
def write_datasets(root: Path) -> dict[str, Path]:
    from datasets import Dataset

    from tests.test_data import HELPSTEER, ORCA, UFB, orca_row, uf_row, write_helpsteer

    qa = [("How can I build a daily drawing habit?", "Start with ten minutes a day.", "Draw."),
          ("What is the capital of Australia?", "Canberra.", "Sydney."),
          ("Explain recursion briefly.", "A function calling itself.", "A loop."),
          ("Name a prime number above 10.", "11.", "12."),
          ("Why is the sky blue?", "Air scatters blue light the most.", "Because of the ocean."),
          ("Give a synonym for happy.", "Joyful.", "Sad."),
          ("Summarise the plot of Hamlet.", "A prince avenges his father.", "It is a play."),
          ("Describe the water cycle.", "Evaporation, condensation, precipitation.", "Water moves.")]
    train, test = qa[:4], qa[4:]
    uf = root / "ultrafeedback_binarized"
    for split, rows in {"train_prefs": train, "test_prefs": test}.items():
        Dataset.from_list([uf_row(p, c, r, 8.0, 3.0) for p, c, r in rows], features=UFB).to_parquet(
            str(uf / "data" / f"{split}-00000-of-00001.parquet"))
    hs = root / "HelpSteer"
    write_helpsteer(hs, train=[(p, a, h, 3) for p, c, r in train for a, h in ((c, 4), (r, 1))],
                    valid=[(p, a, h, 3) for p, c, r in test for a, h in ((c, 4), (r, 1))], features=HELPSTEER)
    orca = root / "distilabel-intel-orca-dpo-pairs"
    Dataset.from_list([orca_row("", p, c, r, "unchanged", [9.0, 3.0]) for p, c, r in qa], features=ORCA).to_parquet(
        str(orca / "data" / "train-00000-of-00001.parquet"))
    return {"ultrafeedback": uf, "helpsteer": hs, "orca": orca}


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory):
    """Hub-layout copies of the three datasets; the datasets cache goes to a temp dir too (env: the CLI run)."""
    import datasets

    root = tmp_path_factory.mktemp("paper_hub")
    mp = pytest.MonkeyPatch()
    mp.setattr(datasets.config, "HF_DATASETS_CACHE", root / "cache")
    mp.setenv("HF_DATASETS_CACHE", str(root / "cache"))
    paths = write_datasets(root)
    for model_id in sources.PAPER_MODEL_IDS:  # built once here, so no single run's timing carries the build
        pm.miniature_dir(model_id)
    yield paths
    mp.undo()


def overrides(cell: str, method: str, data: dict[str, Path]) -> list[str]:
    """The cell as the paper runs it, with only model sources, sizes and the dataset path changed."""
    dataset = split_cell(cell)[2]
    sizes = ["trainer.max_steps=2", "trainer.prompts_per_step=2", "trainer.num_generations=2", "trainer.save_steps=0",
             f"eval.n_prompts={N_EVAL}", "eval.max_new_tokens=8", "prompter.max_new_tokens=8",
             "frozen.max_new_tokens=8", "eval.bootstrap_resamples=200"]
    if dataset == "orca":  # one train split: the cell holds out 1,000 rows; the copy has 8
        sizes.append(f"dataset.heldout={N_EVAL}")
    return [f"experiment=paper/{cell}", f"method={method}", "prompter.source=miniature", "frozen.source=miniature",
            "reward.source=miniature", "device=cpu", f"dataset.path={data[dataset]}", "logger=none", *sizes]


def check_run(run_dir: Path, cell: str, method: str) -> None:
    """What a finished paper run leaves: finite rewards, 2 logged steps, the trained model saved as configured."""
    import torch

    prompter, frozen, dataset = split_cell(cell)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["n"] == N_EVAL
    assert metrics["dataset"]["name"] == dataset
    assert all(math.isfinite(metrics[k]) for k in ("reward_mean", "reward_ci_low", "reward_ci_high"))
    assert metrics["reward_ci_low"] <= metrics["reward_mean"] <= metrics["reward_ci_high"]
    rm = metrics["reward_model"]
    assert rm["model"] == str(pm.miniature_dir("weqweasdas/RM-Gemma-2B")) and rm["tokenizer_adds_bos"] is True
    rows = [json.loads(line) for line in (run_dir / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == N_EVAL and all(math.isfinite(r["r"]) for r in rows)
    steps = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "grad_norm" in s] == [1, 2]  # two optimizer updates
    # rewards and KL are logged on the steps that generated (every trainer.num_iterations updates)
    scored = [s for s in steps if "kl_seq" in s]
    assert scored and scored[0]["step"] == 1
    assert all(math.isfinite(s["reward"]) and math.isfinite(s["kl_seq"]) for s in scored)
    samples = (run_dir / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 2 * 2 * len(scored)  # prompts_per_step x num_generations per generation round
    trained, name = (PROMPTER[prompter], "prompter") if method == "alignpro" else (FROZEN[frozen], "oracle")
    cls, family, lora = trained
    saved = run_dir / name
    files = {p.name for p in saved.iterdir()}
    if lora:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
        adapter = json.loads((saved / "adapter_config.json").read_text())
        base = json.loads((Path(adapter["base_model_name_or_path"]) / "config.json").read_text())
        assert base["architectures"] == [cls]
        # all-linear: every attention and MLP projection of the class, not the LM head
        assert {m.rsplit(".", 1)[-1] for m in adapter["target_modules"]} == LINEAR[cls]
    else:
        assert "model.safetensors" in files and "adapter_config.json" not in files
        assert json.loads((saved / "config.json").read_text())["architectures"] == [cls]
    template = (saved / "chat_template.jinja").read_text()
    assert template == pt._trl_template(family)  # the family's template travelled with the tokenizer
    args = torch.load(saved / "training_args.bin", weights_only=False)
    assert args.gradient_checkpointing and args.beta == 0.2  # the cell's own setting and λ


@pytest.fixture
def loads(monkeypatch):
    """(role, model class, tokenizer folder) of every model alignpro's factories load during a run."""
    import alignpro.models.frozen
    import alignpro.models.prompter
    from alignpro.models import assets

    seen = []

    def spy(role):
        def load(path, *a, **k):
            model, tok = assets.load_causal_lm(path, *a, **k)
            seen.append((role, type(model).__name__, tok.name_or_path))
            return model, tok
        return load

    monkeypatch.setattr(alignpro.models.frozen, "load_causal_lm", spy("frozen"))
    monkeypatch.setattr(alignpro.models.prompter, "load_causal_lm", spy("prompter"))
    return seen


@pytest.mark.parametrize(("cell", "method"), [(c, m) for c in CELLS for m in ("alignpro", "rlhf")
                                               if (c, m) != CLI_RUN])  # CLI_RUN: the CLI test below
def test_a_paper_cell_trains_and_evaluates_with_its_model_classes(cell, method, paper_data, loads, tmp_path):
    from alignpro.train import train

    train(compose(*overrides(cell, method, paper_data)), tmp_path)
    check_run(tmp_path, cell, method)
    prompter, frozen, _ = split_cell(cell)
    if method == "alignpro":  # the frozen model answers x'; the base prompter (rho_ref) is loaded for evaluation
        frozen_cls = FROZEN[frozen][0]
        assert ("frozen", frozen_cls, str(pm.miniature_dir(sources.FROZEN[list(FROZEN).index(frozen)]))) in loads
        assert {cls for role, cls, _ in loads if role == "prompter"} <= {PROMPTER[prompter][0]}
    else:  # the oracle evaluates its own trained weights: the frozen factory is not asked for a second copy
        assert all(role != "prompter" for role, _, _ in loads)


def test_a_paper_cell_runs_through_the_cli(paper_data, tmp_path):
    """``python -m alignpro.train experiment=paper/<cell> ...`` as a user types it, on the miniatures."""
    cell, method = CLI_RUN
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = cli.run("alignpro.train", *overrides(cell, method, paper_data), f"hydra.run.dir={run_dir}", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (run_dir / "error.txt").exists()
    check_run(run_dir, cell, method)
