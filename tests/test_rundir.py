import json
import os

import pytest

from alignpro.rundir import RunDir, Sample, SampleLog, read_jsonl, write_atomic


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
