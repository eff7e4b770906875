"""Resume (``resume=auto``): a real training run killed with SIGKILL after a checkpoint and started again continues
into the same W&B run with each step logged once; a finished job is read back; a used run dir is continued by the
same job only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from alignpro.run.directory import RunDir, read_jsonl
from tests.conftest import ROOT, compose
from tests.wandb_offline import read_run_segments

SMOKE = ["experiment=smoke", "logger.mode=offline", "trainer.max_steps=4", "trainer.save_steps=2"]


def train_cmd(run_dir, *extra):
    return [sys.executable, "-m", "alignpro.train", *SMOKE, f"hydra.run.dir={run_dir}", *extra]


# Each attempt as a requeued job starts: a fresh process with its own W&B service. Once this test process has used
# W&B, WANDB_SERVICE in its environment would make the children share its service, which keeps the killed attempt's
# run registered ("run ID ... is in use").
def fresh_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}


def logged_steps(files: RunDir) -> list[int]:
    """Steps in train_log.jsonl so far (a line being written is not read)."""
    lines = files.train_log.read_text().splitlines(keepends=True) if files.train_log.exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("\n") and '"reward"' in line]


def test_a_killed_run_resumes_from_its_checkpoint_into_the_same_wandb_run(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen(train_cmd(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=fresh_env())
    files = RunDir(killed)
    # Killed once step 3 is logged: after the checkpoint of step 2, before that of step 4 (a step later), so the
    # logs hold rows the resumed run must not repeat.
    deadline = time.monotonic() + 240
    while 3 not in logged_steps(files):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "step 3 not logged after 240 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert files.newest_checkpoint()[0] == 2 and not files.is_finished()
    first_id = files.read_wandb_id()

    again = subprocess.run(train_cmd(killed), cwd=ROOT, capture_output=True, text=True, timeout=600, env=fresh_env())
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout and "step 2 of 4" in again.stdout
    assert "missing keys" not in again.stderr  # the tied output head is not reported missing
    uninterrupted = subprocess.run(train_cmd(whole), cwd=ROOT, capture_output=True, text=True, timeout=600,
                                   env=fresh_env())
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    # The JSONL logs hold each step once, whatever the kill cut off between the checkpoint and the kill.
    steps = [r["step"] for r in files.read_train_log() if "reward" in r]
    assert steps == [1, 2, 3, 4]
    samples = read_jsonl(files.samples)
    assert [r["step"] for r in samples] == sorted(r["step"] for r in samples) == [s for s in range(4) for _ in range(4)]

    # Same W&B run: one id, kept in the job dir, in both attempts' offline folders. The killed attempt's file lost
    # what W&B had not flushed, so the resumed attempt's file holds the whole curve, each step once.
    folders = sorted((files.root / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(f"-{first_id}") for f in folders)
    assert files.read_wandb_id() == first_id
    resumed = read_run_segments(files.root / "wandb")[-1]
    assert resumed["id"] == first_id
    assert [row["train/global_step"] for row in resumed["history"] if "train/reward" in row] == [1, 2, 3, 4]

    # Weights, optimizer, scheduler and RNG came back: the resumed run is the uninterrupted one, sample for sample.
    ref = RunDir(whole)
    assert [r["reward"] for r in files.read_train_log() if "reward" in r] == \
        [r["reward"] for r in ref.read_train_log() if "reward" in r]
    assert samples == read_jsonl(ref.samples)
    got, want = files.read_metrics(), ref.read_metrics()
    for key in ("reward_mean", "reward_var", "reward_ci_low", "reward_ci_high", "n"):
        assert got[key] == want[key], key
    assert files.read_eval_samples() == ref.read_eval_samples()
    assert not files.checkpoints.exists()  # a finished job keeps no checkpoints (trainer.keep_checkpoints=false)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished smoke job, trained in-process."""
    from alignpro.train import train

    run_dir = tmp_path_factory.mktemp("finished")
    train(compose("experiment=smoke", "logger=none", "trainer.max_steps=1", "eval.n_prompts=2"), run_dir)
    return RunDir(run_dir)


def test_a_finished_job_is_read_back_not_run_again(finished_run):
    from alignpro.train import train

    before = {p: p.stat().st_mtime_ns for p in finished_run.root.rglob("*") if p.is_file()}
    t0 = time.perf_counter()
    metrics = train(compose("experiment=smoke", "logger=none", "trainer.max_steps=1", "eval.n_prompts=2"),
                    finished_run.root)
    assert metrics == finished_run.read_metrics()
    assert time.perf_counter() - t0 < 10  # nothing loaded, nothing trained
    assert {p: p.stat().st_mtime_ns for p in finished_run.root.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("override, names", [
    ("lam=0.7", ["lam: 0.2 -> 0.7"]),
    ("resume=never", ["resume=never", "already holds a run"]),
])
def test_a_used_run_dir_is_continued_by_the_same_job_only(finished_run, override, names):
    from alignpro.config.validate import ConfigError
    from alignpro.train import train

    cfg = compose("experiment=smoke", "logger=none", "trainer.max_steps=1", "eval.n_prompts=2", override)
    with pytest.raises(ConfigError) as err:
        train(cfg, finished_run.root)
    assert all(n in str(err.value) for n in names), str(err.value)
    assert "\n" not in str(err.value)


def test_a_resumed_job_drops_the_error_of_its_failed_attempt(tmp_path):
    from alignpro.train import train

    files = RunDir(tmp_path)
    files.write_error("RuntimeError: the node went away\n")
    train(compose("experiment=smoke", "logger=none", "trainer.max_steps=1", "eval.n_prompts=2"), tmp_path)
    assert files.is_finished() and not files.error.exists()
    assert json.loads(files.metrics.read_text())["n"] == 2


def test_a_job_that_died_after_training_is_evaluated_from_its_last_checkpoint_without_training_more(tmp_path):
    """Killed during the evaluation: the final checkpoint (step = max_steps) is loaded as it is. (transformers'
    training loop, resumed there, would run one step more before it checks max_steps.)"""
    from alignpro.train import train

    overrides = ("experiment=smoke", "logger=none", "trainer.max_steps=2", "trainer.save_steps=2",
                 "trainer.keep_checkpoints=true")
    files = RunDir(tmp_path)
    first = train(compose(*overrides), tmp_path)
    log_rows, samples = files.read_train_log(), read_jsonl(files.samples)
    files.metrics.unlink()  # as if the job died before writing it
    again = train(compose(*overrides), tmp_path)
    assert again["reward_mean"] == first["reward_mean"] and again["reward_var"] == first["reward_var"]
    assert files.read_train_log() == log_rows and read_jsonl(files.samples) == samples  # no step was added


@pytest.mark.parametrize("trainer, lora", [("rloo", "prompter.lora={r: 4}"), ("grpo", "prompter.lora=null")])
def test_a_lora_adapter_and_grpo_resume_to_the_uninterrupted_run(trainer, lora, tmp_path, caplog):
    """An interruption between the checkpoints of steps 1 and 2, made by removing what came after step 1 (the
    SIGKILL test above covers the kill itself): the resumed LoRA adapter / GRPO policy ends where the whole run did."""
    import shutil

    from alignpro.train import train

    overrides = ("experiment=smoke", "logger=none", f"trainer={trainer}", lora, "trainer.max_steps=2",
                 "trainer.save_steps=1", "trainer.save_total_limit=2", "trainer.keep_checkpoints=true")
    files = RunDir(tmp_path)
    whole = train(compose(*overrides), tmp_path)
    assert files.newest_checkpoint()[0] == 2
    shutil.rmtree(files.checkpoints / "checkpoint-2")
    caplog.set_level("INFO", logger="alignpro")
    shutil.rmtree(files.model("prompter"))
    files.metrics.unlink()
    resumed = train(compose(*overrides), tmp_path)
    assert files.read_train_log()[0]["step"] == 1 and "resuming from" in caplog.text and "step 1 of 2" in caplog.text
    assert (resumed["reward_mean"], resumed["reward_var"]) == (whole["reward_mean"], whole["reward_var"])
    assert [r["step"] for r in files.read_train_log() if "reward" in r] == [1, 2]
    if lora != "prompter.lora=null":
        assert (files.model("prompter") / "adapter_model.safetensors").is_file()


def test_an_attempt_killed_before_its_first_checkpoint_starts_over_without_repeating_its_rows(tmp_path):
    from alignpro.train import train

    overrides = ("experiment=smoke", "logger=none", "trainer.max_steps=2", "trainer.save_steps=0")
    files = RunDir(tmp_path)
    train(compose(*overrides), tmp_path)
    files.metrics.unlink()  # no checkpoints (save_steps=0): the job starts over
    train(compose(*overrides), tmp_path)
    assert [r["step"] for r in files.read_train_log() if "reward" in r] == [1, 2]
    assert sorted({r["step"] for r in read_jsonl(files.samples)}) == [0, 1] and len(read_jsonl(files.samples)) == 8
