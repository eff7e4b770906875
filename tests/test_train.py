"""End-to-end: experiment=smoke for every method (tiny models, real TRL, real offline W&B), and a real multirun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignpro.train import train
from tests import cli
from tests.conftest import ROOT, compose
from tests.wandb_offline import read_run


@pytest.mark.parametrize("method", ["alignpro", "rlhf", "no_finetune", "base_prompter"])
def test_smoke_runs_every_method_end_to_end(method, tmp_path):
    cfg = compose("experiment=smoke", f"method={method}", "logger.mode=offline")
    summary = train(cfg, tmp_path, group="test", name=method)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["n"] == cfg.eval.n_prompts
    assert metrics["reward_ci_low"] <= metrics["reward_mean"] <= metrics["reward_ci_high"]
    assert summary["reward_mean"] == metrics["reward_mean"]
    rows = [json.loads(line) for line in (tmp_path / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == cfg.eval.n_prompts
    assert all((r["x_prime"] is not None) == (method in ("alignpro", "base_prompter")) for r in rows)
    trains = method in ("alignpro", "rlhf")
    assert (tmp_path / "samples.jsonl").exists() == trains
    if trains:
        samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
        k, steps, per_step = cfg.trainer.num_generations, cfg.trainer.max_steps, cfg.trainer.prompts_per_step
        assert len(samples) == k * steps * per_step
        assert {s["step"] for s in samples} == set(range(steps))
        assert (tmp_path / ("prompter" if method == "alignpro" else "oracle") / "config.json").exists()
        assert metrics["timing_s"]["per_step"] > 0
        curve = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
        steps_logged = [row for row in curve if "kl_seq" in row]
        assert [row["step"] for row in steps_logged] == list(range(1, steps + 1))
    run = read_run(tmp_path / "wandb")
    assert run["job_type"] == method and run["config"]["method"]["name"] == method
    assert run["config"]["run_info"]["versions"]["trl"]
    assert any("eval/reward_mean" in row for row in run["history"])
    if trains:  # the sequence-level KL of eq. 9 reaches W&B every step, = per-token KL × mean rewrite length
        steps_logged = [row for row in run["history"] if "train/kl_seq" in row]
        assert len(steps_logged) == cfg.trainer.max_steps
        for row in steps_logged:
            assert row["train/kl_seq"] == pytest.approx(row["train/kl"] * row["train/completions/mean_length"])
            assert row["train/objective"] == pytest.approx(row["train/reward"] - cfg.lam * row["train/kl_seq"])
        # the run's one W&B writer also logged every training sample, the rows of samples.jsonl, as one table
        tables = [row for row in run["history"] if "train/samples/nrows" in row]
        assert [row["train/samples/nrows"] for row in tables] == [len(samples)]
    # a trained prompter goes to W&B as a model artifact: its folder's files, its card as metadata
    arts = [a for a in run["artifacts"] if a["type"] == "model"]  # (tables are artifacts too)
    if method == "alignpro":
        (art,) = arts
        folder = tmp_path / "prompter"
        assert art["name"] == f"prompter-{run['id']}" and art["type"] == "model"
        assert set(art["files"]) == {p.name for p in folder.iterdir()}
        assert art["metadata"]["heldout"]["reward_mean"] == metrics["reward_mean"]
        assert art["metadata"]["config"]["lam"] == cfg.lam and art["metadata"]["rewrite"]["mode"] == "full"
        staged = [Path(p) for p in art["files"].values() if p]
        assert staged and all(Path(p).read_bytes() == (folder / n).read_bytes() for n, p in art["files"].items() if p)
    else:
        assert arts == []


def test_smoke_runs_with_grpo_and_real_offline_wandb(tmp_path):
    import torch

    cfg = compose("experiment=smoke", "trainer=grpo", "logger.mode=offline", "lam=0.3")
    train(cfg, tmp_path, group="test", name="grpo")
    samples = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(samples) == cfg.trainer.num_generations * cfg.trainer.max_steps * cfg.trainer.prompts_per_step
    args = torch.load(tmp_path / "prompter" / "training_args.bin", weights_only=False)
    assert type(args).__name__ == "GRPOConfig" and args.beta == 0.3 and args.scale_rewards == "none"
    run = read_run(tmp_path / "wandb")
    assert run["config"]["trainer"]["name"] == "grpo"
    steps = [row for row in run["history"] if "train/objective" in row]
    assert len(steps) == cfg.trainer.max_steps
    for row in steps:
        assert row["train/objective"] == pytest.approx(row["train/reward"] - 0.3 * row["train/kl_seq"])
    assert any("eval/reward_mean" in row for row in run["history"])


def test_the_single_run_cli_trains_evaluates_and_writes_its_run_dir(tmp_path):
    """``python -m alignpro.train <overrides>`` as a user types it: exit 0, the run dir complete, the log naming it."""
    run_dir = tmp_path / "run"
    proc = cli.run("alignpro.train", "experiment=smoke", "logger=none", "lam=0.4", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "run_info.json", "samples.jsonl", "train_log.jsonl", "eval_samples.jsonl", "metrics.json",
            "prompter", ".hydra"} <= files
    assert "error.txt" not in files
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == "alignpro" and metrics["lam"] == 0.4 and metrics["n"] == 4
    assert f"-> {run_dir / 'metrics.json'}" in proc.stdout + proc.stderr  # the last log line says where it went


def test_trained_prompter_differs_from_reference(tmp_path):
    """A few real RLOO steps at a high learning rate move the prompter's weights (the update happens)."""
    import torch
    from transformers import AutoModelForCausalLM

    from alignpro.models.assets import tiny_model_dir

    cfg = compose("experiment=smoke", "logger=none", "trainer.learning_rate=1e-2")
    train(cfg, tmp_path)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir("causal_lm"))
    new = AutoModelForCausalLM.from_pretrained(tmp_path / "prompter")
    delta = sum((a - b).abs().sum().item() for a, b in zip(ref.parameters(), new.parameters(), strict=True))
    assert delta > 0
    assert not any(torch.isnan(p).any() for p in new.parameters())


def test_multirun_gives_one_wandb_run_per_job_with_its_own_config(tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli.run("alignpro.train", "--multirun", "experiment=smoke", "trainer.max_steps=1", "eval.n_prompts=2",
                   "lam=0.05,0.5", "logger.mode=offline", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    runs = [read_run(j / "wandb") for j in jobs]
    assert runs[0]["id"] != runs[1]["id"]
    assert [r["config"]["lam"] for r in runs] == [0.05, 0.5]
    assert runs[0]["group"] == runs[1]["group"] == f"sweep-{sweep.name}"
    assert runs[0]["name"].startswith("0:") and "lam=0.05" in runs[0]["name"]
    assert runs[1]["name"].startswith("1:") and "lam=0.5" in runs[1]["name"]
    for job, lam in zip(jobs, (0.05, 0.5), strict=True):
        assert json.loads((job / "metrics.json").read_text())["lam"] == lam


@pytest.mark.integration
def test_align_pro_trains_against_a_frozen_model_behind_a_real_api(smollm2_server, tmp_path):
    """The paper's motivating case: the frozen model is only reachable over HTTP (a real `transformers serve`).
    Align-Pro trains the tiny prompter against it; every answer is a counted request, none failed."""
    cfg = compose("experiment=smoke", "method=alignpro", "logger=none", "trainer.max_steps=1", "eval.n_prompts=2",
                  "eval.answer_shift=false", "frozen=openai_api", f"frozen.base_url={smollm2_server.base_url}",
                  f"frozen.model={smollm2_server.model}", "frozen.api_key_env=null",
                  "frozen.extra_sampling=generation_config", "frozen.max_new_tokens=8", "frozen.max_concurrency=4")
    train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    rollouts = cfg.trainer.prompts_per_step * cfg.trainer.num_generations
    assert metrics["frozen_api"]["completed"] == rollouts + cfg.eval.n_prompts
    assert metrics["frozen_api"]["failures"] == 0
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == rollouts and all(isinstance(s["y"], str) for s in samples)


@pytest.mark.parametrize("method,extra", [("no_finetune", ()), ("alignpro", ()),
                                          ("alignpro", ("meta_prompt=instruction", "sft=instructions",
                                                        "sft.n_examples=4", "sft.batch_size=2"))])
def test_a_run_does_not_depend_on_whether_the_reward_was_cached(method, extra, tmp_path, monkeypatch):
    """The first run fits the BT reward (and rho_sft), drawing random numbers; the second reads them from the cache;
    training and evaluation are re-seeded, so both runs sample the same answers and get the same rewards."""
    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path / "cache"))
    cfg = compose("experiment=smoke", f"method={method}", "logger=none", "trainer.max_steps=1",
                  "eval.answer_shift=false", *extra)
    cold = train(cfg, tmp_path / "cold")
    warm = train(cfg, tmp_path / "warm")
    assert cold["reward_model"]["cached"] is False and warm["reward_model"]["cached"] is True
    rows = [[json.loads(line) for line in (tmp_path / d / "eval_samples.jsonl").read_text().splitlines()]
            for d in ("cold", "warm")]
    assert rows[0] == rows[1] and cold["reward_mean"] == warm["reward_mean"]


def test_accelerate_launch_with_two_processes_gives_one_run_dir_one_wandb_run_and_all_samples(tmp_path):
    """`accelerate launch --num_processes 2` on CPU (gloo): each process composes its own ``${now:%f}`` run dir;
    all work in process 0's, which alone writes the config, the JSONL step log, W&B and metrics.json, while every
    process's samples and RNG state land there."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "alignpro.train", "experiment=smoke", "logger.mode=offline", "trainer.save_steps=1",
           "trainer.keep_checkpoints=true", f"hydra.run.dir={tmp_path}/run-${{now:%H-%M-%S-%f}}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = tmp_path.iterdir()  # the other process's own folder is gone
    cfg = compose("experiment=smoke")
    per_process = cfg.trainer.max_steps * cfg.trainer.prompts_per_step * cfg.trainer.num_generations
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * per_process  # both processes' rollouts
    log_rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_rows if "reward" in r] == [1, 2]  # logged once, by process 0
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    assert read_run(run / "wandb")["config"]["lam"] == cfg.lam
    assert json.loads((run / "metrics.json").read_text())["n"] == cfg.eval.n_prompts
    ckpt = run / "checkpoints" / f"checkpoint-{cfg.trainer.max_steps}"
    assert {"rng_state_0.pth", "rng_state_1.pth", "COMPLETE"} <= {p.name for p in ckpt.iterdir()}


def test_the_paper_budget_is_counted_on_the_loaded_data_and_recorded(tmp_path):
    """trainer.max_steps=paper: 8 train prompts in batches of 2 prompts × 2 rewrites = 2 batches, each trained on
    twice = 4 optimizer steps (each in 2 passes of 2 rollouts); config.yaml (and W&B) hold the number, and the reward
    is called once per batch."""
    import yaml

    cfg = compose("experiment=smoke", "logger=none", "trainer.max_steps=paper", "trainer.num_iterations=2",
                  "trainer.micro_batches=2", "dataset.max_train=8", "trainer.save_steps=0")
    train(cfg, tmp_path)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["trainer"]["max_steps"] == 4
    curve = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in curve if "loss" in row] == [1, 2, 3, 4]
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 2 * 2 and len({s["step"] for s in samples}) == 2


def test_a_new_method_is_one_class_and_one_yaml(tmp_path):
    """tests/new_method.py and tests/conf/method/constant_suffix.yaml, found through Hydra's search path with no
    edit to alignpro: the sweep preflight validates it (only the misspelt job is refused), and the single-run CLI runs
    it end to end, π_F answering x + the instruction."""
    from tests.new_method import INSTRUCTION

    common = ["experiment=smoke", f"hydra.searchpath=[file://{ROOT / 'tests' / 'conf'}]", "logger=none",
              "eval.n_prompts=2"]
    sweep = cli.run("alignpro.train", "--multirun", *common, "method=constant_suffix,nope",
                    f"hydra.sweep.dir={tmp_path}/s", timeout=300)
    assert sweep.returncode == 2 and "1 of 2 jobs are invalid" in sweep.stderr, sweep.stderr[-3000:]
    assert "job 1 (" in sweep.stderr and "job 0 (" not in sweep.stderr
    run_dir = tmp_path / "run"
    proc = cli.run("alignpro.train", *common, "method=constant_suffix", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == "constant_suffix" and metrics["n"] == 2 and metrics["empty_rewrites"] == 0
    rows = [json.loads(line) for line in (run_dir / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["x_prime"] == f"{r['x']} {INSTRUCTION}" for r in rows)
    assert not (run_dir / "samples.jsonl").exists()  # nothing trained
