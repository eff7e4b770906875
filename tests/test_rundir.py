import json
import os

import pytest

from alignpro.run.directory import RunDir, Sample, SampleLog, read_jsonl, write_atomic


def test_sample_rows_have_the_documented_keys_in_order_and_read_back():
    train = Sample("x", "x'", "y", 1.5, step=3)
    assert list(train.row()) == ["step", "x", "x_prime", "y", "r"]
    held_out = Sample("x", None, "y", 0.5)
    assert held_out.row() == {"x": "x", "x_prime": None, "y": "y", "r": 0.5}
    shifted = Sample("x", "x'", "y", 0.5, y_direct="yd", r_direct=0.25)
    assert list(shifted.row()) == ["x", "x_prime", "y", "r", "y_direct", "r_direct"]
    for s in (train, held_out, shifted):
        assert Sample.from_row(json.loads(json.dumps(s.row()))) == s


def test_sample_log_appends_and_none_keeps_nothing(tmp_path):
    log = SampleLog(tmp_path / "s.jsonl")
    log.write([Sample("a", None, "b", 1.0, step=0)])
    log.write(iter([Sample("c", None, "d", 2.0, step=1)]))  # a generator is fine
    assert [r["x"] for r in read_jsonl(tmp_path / "s.jsonl")] == ["a", "c"]
    SampleLog(None).write([Sample("a", None, "b", 1.0)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl"]


def test_run_dir_names_its_files_and_round_trips_what_it_writes(tmp_path):
    files = RunDir(tmp_path / "job")
    assert not files.is_finished()
    files.write_eval_samples([Sample("x", "x'", "y", 0.25)])
    files.write_metrics({"reward_mean": 0.25, "n": 1, "method": "alignpro"})
    assert files.is_finished() and files.metrics == tmp_path / "job" / "metrics.json"
    assert files.read_metrics() == {"reward_mean": 0.25, "n": 1, "method": "alignpro"}
    assert files.read_eval_samples() == [Sample("x", "x'", "y", 0.25)]
    assert files.model("prompter") == tmp_path / "job" / "prompter"
    assert files.read_train_log() == []  # absent: a run that never trained


def test_writes_are_atomic_no_temp_file_is_left_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "m.json", "old")
    assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["m.json"]

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "m.json", "new")
    assert (tmp_path / "m.json").read_text() == "old"  # a reader never sees half a file
    assert sorted(os.listdir(tmp_path)) == ["m.json"]  # and the temporary file is cleaned up


def test_read_config_falls_back_to_hydras_copy(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("lam: 0.2\n")
    assert RunDir(tmp_path).read_config() == {"lam": 0.2}
    (tmp_path / "config.yaml").write_text("lam: 0.5\n")
    assert RunDir(tmp_path).read_config() == {"lam": 0.5}


def test_newest_checkpoint_is_the_newest_complete_one_never_a_half_written_one(tmp_path):
    files = RunDir(tmp_path)
    assert files.newest_checkpoint() is None  # no checkpoints/ at all
    for step in (2, 10):
        (files.checkpoints / f"checkpoint-{step}").mkdir(parents=True)
        files.mark_checkpoint_complete(step)
    (files.checkpoints / "checkpoint-12").mkdir()  # a kill while TRL was writing it: no COMPLETE
    (files.checkpoints / "checkpoint-12" / "model.safetensors").write_bytes(b"half")
    (files.checkpoints / "checkpoint-x").mkdir()  # not TRL's name
    assert files.newest_checkpoint() == (10, files.checkpoints / "checkpoint-10")  # 10 > 2 by number, not by name
    assert json.loads((files.checkpoints / "checkpoint-10" / "COMPLETE").read_text()) == {"step": 10}


def test_rewind_logs_keeps_each_step_up_to_the_checkpoint_once(tmp_path):
    files = RunDir(tmp_path)
    # steps 1..3 logged, then the step-3 summary of a finished training; samples are tagged with the steps done
    log_rows = [{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.2}, {"step": 3, "reward": 0.3},
                {"step": 3, "train_runtime": 9.0}]
    files.train_log.write_text("".join(json.dumps(r) + "\n" for r in log_rows))
    SampleLog(files.samples).write(Sample(f"x{s}", "x'", "y", 0.0, step=s) for s in (0, 0, 1, 1, 2, 2))
    files.rewind_logs(2)
    assert files.read_train_log() == log_rows[:2]
    assert [r["step"] for r in read_jsonl(files.samples)] == [0, 0, 1, 1]
    files.rewind_logs(3)  # nothing after step 2 is left to cut
    assert files.read_train_log() == log_rows[:2]
    files.rewind_logs(0)
    assert files.read_train_log() == [] and read_jsonl(files.samples) == []


def test_wandb_id_round_trips_and_an_error_is_cleared(tmp_path):
    files = RunDir(tmp_path)
    assert files.read_wandb_id() is None
    files.write_wandb_id("abc123")
    assert files.read_wandb_id() == "abc123"
    files.write_error("boom\n")
    files.clear_error()
    assert not files.error.exists()
    files.clear_error()  # nothing to clear is fine

