import json

import yaml

from alignpro.run import tracking
from tests import cli
from tests.conftest import compose


def test_start_writes_resolved_config_and_run_info_and_an_offline_wandb_run(tmp_path, monkeypatch):
    secret = "s3cr3t-key-never-written-0123456789"
    monkeypatch.setenv("WANDB_API_KEY", secret)  # must stay in the environment only
    cfg = compose("experiment=smoke", "logger.mode=offline", "lam=0.7")
    with tracking.start(cfg, tmp_path, group="g", name="n", job_type="alignpro") as t:
        assert t.run is not None
        t.log({"x": 1.0})
        t.log({"x": 2.5})
        t.set_summary({"eval/reward_mean": 0.25})
        run_id = t.run.id
    # the offline run, read back from its own files: id, grouping, the resolved config and what was logged
    from tests.wandb_offline import read_run

    run = read_run(tmp_path / "wandb")
    assert (run["id"], run["group"], run["name"], run["job_type"]) == (run_id, "g", "n", "alignpro")
    assert run["config"]["lam"] == 0.7 and run["config"]["prompter"]["name"] == "tiny"
    assert [row["x"] for row in run["history"] if "x" in row] == [1.0, 2.5]
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["lam"] == 0.7 and saved["prompter"]["name"] == "tiny"
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert set(info["versions"]) >= {"torch", "transformers", "trl", "wandb"} and "sha" in info["git"]
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_mode_is_offline_without_a_key(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    mode = compose().logger.mode
    assert mode is None and tracking.wandb_mode(mode) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert tracking.wandb_mode(mode) == "online"
    assert tracking.wandb_mode("offline") == "offline"  # logger.mode, when set, wins over the key
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.wandb_mode(mode) is None  # wandb reads WANDB_MODE itself


def test_no_logger_backend_writes_the_run_files_only(tmp_path):
    with tracking.start(compose("logger=none", "lam=0.4"), tmp_path, group="g", name="n", job_type="x") as t:
        assert t.run is None
        t.log({"x": 1.0})  # a no-op without W&B
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["lam"] == 0.4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "run_info.json"]


def test_secrets_typed_on_the_command_line_are_scrubbed_from_hydra_files(tmp_path):


    secret = "sk-live-abcdef0123456789"
    proc = cli.run("alignpro.train", "experiment=smoke", f"+logger.api_key={secret}", f"hydra.run.dir={tmp_path}",
                   timeout=120)
    assert proc.returncode != 0 and "holds a secret" in proc.stderr
    assert secret not in proc.stderr + proc.stdout
    assert (tmp_path / ".hydra" / "overrides.yaml").exists()
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
