"""rho_sft (alignpro/methods/sft.py): demonstrations, the usable-rewrite rate, and the cached supervised stage on a
tiny LM."""

import json
from collections import Counter
from pathlib import Path

import pytest

from alignpro.config.sources import AssetError
from alignpro.methods.sft import demonstrations, menu_rate, sft_prompter_path
from alignpro.run.errors import BadInput, describe
from tests.conftest import compose

MENU = ["Answer in one short sentence.", "Be brief.", "Use a numbered list."]


def test_demonstrations_pair_train_prompts_with_menu_instructions_uniformly():
    cfg = compose("experiment=smoke", "meta_prompt=instruction", "sft=instructions", "sft.n_examples=600",
                  f"sft.instructions=[{','.join(repr(m) for m in MENU)}]")
    records = [{"prompt": f"question {i}?"} for i in range(50)]
    rows = demonstrations(records, cfg.prompter, cfg.sft)
    assert len(rows) == 600
    targets = Counter(r["completion"][0]["content"] for r in rows)
    assert set(targets) == set(MENU) and min(targets.values()) > 150  # uniform: ~200 each
    assert "question 0?" in rows[0]["prompt"][-1]["content"] and "question 0?" in rows[50]["prompt"][-1]["content"]
    assert rows == demonstrations(records, cfg.prompter, cfg.sft)  # seeded
    full = demonstrations(records, compose("experiment=smoke", "sft=instructions").prompter, cfg.sft)
    assert full[0]["completion"][0]["content"] == f"question 0? {rows[0]['completion'][0]['content']}"


def test_menu_rate_counts_x_followed_by_a_menu_instruction():
    xs = ["Why?", "How?", "What?", "When?"]
    rewrites = ["Why? be   brief.", "How? Use a numbered list.", "What? Tell me a joke.", "The answer is 4."]
    assert menu_rate(xs, rewrites, MENU) == 0.5
    assert menu_rate(["Why?"], ["Why?"], MENU) == 0.0
    assert menu_rate(["Why?"], ["Huh? Be brief."], MENU) == 0.0  # a menu instruction after something other than x


def test_sft_is_off_by_default_and_returns_the_prompter_itself():
    cfg = compose("experiment=smoke")
    from alignpro.models.prompter import prompter_path

    assert sft_prompter_path(cfg.prompter, cfg.sft, [{"prompt": "x"}], "cpu") == prompter_path(cfg.prompter)


def test_sft_trains_once_then_reads_the_cache_and_logs_its_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path / "cache"))
    cfg = compose("experiment=smoke", "meta_prompt=instruction", "sft=instructions", "sft.n_examples=16",
                  "sft.batch_size=4", "sft.learning_rate=1e-2")
    records = [{"prompt": f"question {i}?"} for i in range(8)]
    logged = []
    path = sft_prompter_path(cfg.prompter, cfg.sft, records, "cpu", logged.append)
    stats = json.loads((tmp_path / "cache" / "sft" / path.split("/")[-1] / "stats.json").read_text())
    assert stats["n_examples"] == 16 and stats["steps"] == 4
    assert stats["final_loss"] < stats["first_loss"]  # the demonstrations were learned from
    assert [row["sft/step"] for row in logged] == [1, 2, 3, 4] and all("sft/loss" in row for row in logged)
    mtime = (tmp_path / "cache" / "sft" / path.split("/")[-1] / "stats.json").stat().st_mtime_ns
    again = []
    assert sft_prompter_path(cfg.prompter, cfg.sft, records, "cpu", again.append) == path
    assert (tmp_path / "cache" / "sft" / path.split("/")[-1] / "stats.json").stat().st_mtime_ns == mtime
    assert again == logged  # a cached rho_sft still shows its curve in the run that uses it
    other = sft_prompter_path(cfg.prompter, cfg.sft, records[:4], "cpu")  # other train prompts: another rho_sft
    assert other != path
    assert not list((tmp_path / "cache" / "sft").glob(".*tmp*"))  # nothing half-written left behind



def test_a_rho_sft_entry_without_its_stats_is_trained_again(tmp_path, monkeypatch):
    """A folder a killed job left at the cache key (weights, no stats.json) is replaced by a whole rho_sft."""
    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path / "cache"))
    cfg = compose("experiment=smoke", "meta_prompt=instruction", "sft=instructions", "sft.n_examples=4",
                  "sft.batch_size=2")
    records = [{"prompt": f"question {i}?"} for i in range(4)]
    path = Path(sft_prompter_path(cfg.prompter, cfg.sft, records, "cpu"))
    (path / "stats.json").unlink()
    (path / "model.safetensors").write_bytes(b"half the weights")
    assert sft_prompter_path(cfg.prompter, cfg.sft, records, "cpu") == str(path)
    assert json.loads((path / "stats.json").read_text())["steps"] == 2
    assert (path / "model.safetensors").stat().st_size > 1000
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, f"{path.name}.lock"]


@pytest.mark.integration
def test_rho_sft_of_smollm2_writes_menu_instructions(tmp_path):
    """On the real SmolLM2 prompter: before SFT almost no sampled output is a menu instruction; after the default
    SFT stage most are, and every instruction of the menu is sampled (rho_sft is not collapsed)."""
    from alignpro.data.preferences import load_splits
    from alignpro.models.prompter import load_prompter
    from alignpro.models.sampling import Sampling

    cfg = compose("experiment=steer")
    splits = load_splits(cfg.dataset)
    menu = list(cfg.sft.instructions)
    xs = [r["prompt"] for r in splits.train[:48]]
    from transformers import set_seed

    sampling = Sampling(16, 1.0, 1.0, 0)
    set_seed(0)  # sampled rewrites: the same draws on every machine
    before = load_prompter(cfg.prompter).rewrite(xs, sampling)
    rho_sft = load_prompter(cfg.prompter, path=sft_prompter_path(cfg.prompter, cfg.sft, splits.train, "cpu"))
    set_seed(0)
    after = rho_sft.rewrite(xs, sampling)
    assert menu_rate(xs, before, menu) < 0.1
    assert menu_rate(xs, after, menu) > 0.7
    written = Counter(a[len(x):].strip() for x, a in zip(xs, after, strict=True))
    assert sum(written[m] > 0 for m in menu) >= 5


def test_a_multi_process_job_reads_rho_sft_from_the_cache_but_does_not_train_it(tmp_path, monkeypatch):
    """Under `accelerate launch` one process would train ρ_sft alone inside the job's process group: refused with
    what to do; once a single-process run has cached it, every process reads it."""
    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path / "cache"))
    cfg = compose("experiment=smoke", "meta_prompt=instruction", "sft=instructions", "sft.n_examples=8",
                  "sft.batch_size=4")
    records = [{"prompt": f"question {i}?"} for i in range(4)]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(AssetError) as refused:
        sft_prompter_path(cfg.prompter, cfg.sft, records, "cpu")
    assert isinstance(refused.value, BadInput)
    code, line = describe(refused.value)  # what the CLI prints (alignpro.run.errors.run_cli) and exits with
    assert code == 2  # a bad input, not a fault of the run
    assert "not in the cache yet" in line and str(tmp_path / "cache" / "sft") in line
    assert "single process" in line and "launch again" in line  # what to do
    assert not (tmp_path / "cache" / "sft").exists() or not any((tmp_path / "cache" / "sft").iterdir())
    monkeypatch.setenv("WORLD_SIZE", "1")
    path = sft_prompter_path(cfg.prompter, cfg.sft, records, "cpu")
    assert f"({path})" in line  # the refusal named the very cache entry the single-process run then wrote
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert sft_prompter_path(cfg.prompter, cfg.sft, records, "cpu") == path
