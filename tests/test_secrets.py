"""alignpro.run.secrets: what counts as a secret, and its redaction from config trees and free text."""

import os
import subprocess
from pathlib import Path

from alignpro.run.secrets import declare_key_env, redact, redact_text
from tests import cli
from tests.server import ScriptedServer, chat_completion


def test_redact_hides_secret_values_but_keeps_env_var_names():
    cfg = {"logger": {"api_key": "abc", "api_key_env": "WANDB_API_KEY", "token": None}, "lam": 0.2}
    out = redact(cfg)
    assert out == {"logger": {"api_key": "<redacted>", "api_key_env": "WANDB_API_KEY", "token": None}, "lam": 0.2}


def test_redact_text_hides_overrides_and_secret_env_values(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "sk-verysecret123")
    text = "failed: +judge.api_key=abc123 sent sk-verysecret123 to the server"
    clean = redact_text(text)
    assert "abc123" not in clean and "sk-verysecret123" not in clean
    assert "+judge.api_key=<redacted>" in clean and "<MY_SERVICE_API_KEY>" in clean
    assert redact_text("nothing to hide") == "nothing to hide"


def test_redact_text_keeps_placeholders_and_the_punctuation_around_a_value():
    text = "export it (export OPENAI_API_KEY=...), or +frozen.api_key=abcdef123)"
    assert redact_text(text) == "export it (export OPENAI_API_KEY=...), or +frozen.api_key=<redacted>)"


def test_a_declared_key_variable_is_redacted_whatever_its_name(monkeypatch):
    monkeypatch.setenv("MY_LLM_CREDENTIAL", "marker-credential-0042")
    assert "marker-credential-0042" in redact_text("sent marker-credential-0042")  # not a secret-looking name
    declare_key_env("MY_LLM_CREDENTIAL")
    assert redact_text("sent marker-credential-0042") == "sent <MY_LLM_CREDENTIAL>"


# -- end to end: marker keys through the real commands, then every byte they wrote searched -------------------------

ROOT = Path(__file__).resolve().parents[1]  # the commands run this checkout's code (cwd is elsewhere)
MARKERS = {"WANDB_API_KEY": "marker-wandb-7f3a9c01", "OPENAI_API_KEY": "marker-openai-5b2e8d44",
           "MY_LLM_CREDENTIAL": "marker-frozen-key-91c0", "MY_JUDGE_CREDENTIAL": "marker-judge-key-3d7e"}


def keyed(key: str, text: str | None):
    """A server that wants ``key`` and echoes what it was sent in its errors (as some proxies do); ``text=None``
    refuses every chat request (HTTP 400) after the key check."""
    def reply(body, headers):
        sent = headers.get("authorization", "")
        if sent != f"Bearer {key}":
            return 401, {"error": {"message": f"bad key {sent}"}}
        if text is None:
            return 400, {"error": {"message": f"refused request sent with {sent}"}}
        return 200, chat_completion(text)
    return reply


def leaks(*roots, text: str = "") -> list[str]:
    """Where a marker occurs: any file under ``roots`` (binary W&B files included), or ``text``."""
    found = [f"output: {name}" for name, v in MARKERS.items() if v in text]
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [f"{path}: {name}" for name, v in MARKERS.items() if v.encode() in data]
    return found


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_SERVICE", "HYDRA_FULL_ERROR")}
    env.update(MARKERS, HF_HUB_OFFLINE="1", ALIGNPRO_CACHE=str(cwd / "cache"), PYTHONPATH=str(ROOT))
    return cli.run(*argv, cwd=cwd, env=env)


def test_no_key_reaches_the_run_dir_wandb_the_judge_cache_error_txt_or_a_traceback(tmp_path):
    from tests.test_bad_inputs import arms_sweep

    frozen = ScriptedServer(keyed(MARKERS["MY_LLM_CREDENTIAL"], "an answer"), models=["m"])
    refusing = ScriptedServer(keyed(MARKERS["MY_LLM_CREDENTIAL"], None), models=["m"])
    judge = ScriptedServer(keyed(MARKERS["MY_JUDGE_CREDENTIAL"], "8 3\nA is better."))
    with frozen, refusing, judge:
        def train(srv: ScriptedServer, run_dir: str, *extra: str) -> subprocess.CompletedProcess:
            return run("alignpro.train", "experiment=smoke", "logger.mode=offline", "eval.answer_shift=false",
                       "frozen=openai_api", f"frozen.base_url={srv.base_url}", "frozen.model=m",
                       "frozen.api_key_env=MY_LLM_CREDENTIAL", "frozen.max_retries=0",
                       f"hydra.run.dir={tmp_path / run_dir}", *extra, cwd=tmp_path)

        ok = train(frozen, "ok")
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert list((tmp_path / "ok" / "wandb").glob("offline-run-*/run-*.wandb"))  # the finished W&B run is there
        # A server that refuses, echoing the key: a fault (exit 1) with its error.txt; then the traceback asked for.
        failed = train(refusing, "failed")
        debug = train(refusing, "debug", "--debug")
        arms_sweep(tmp_path)
        report = run("alignpro.report", str(tmp_path / "sweep"), "--out", str(tmp_path / "report"), "--no-wandb",
                     "--judge", "openai_api", "--judge-set", f"base_url={judge.base_url}", "model=j",
                     "api_key_env=MY_JUDGE_CREDENTIAL", "n_prompts=4", cwd=tmp_path)
    assert failed.returncode == 1 and "refused request sent with Bearer <" in failed.stderr.splitlines()[-1]
    assert "Traceback" in (tmp_path / "failed" / "error.txt").read_text()
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert report.returncode == 0, report.stderr[-3000:]
    assert list((tmp_path / "cache" / "judge").rglob("*.json"))  # the judge's answers were cached
    outputs = "".join(p.stdout + p.stderr for p in (ok, failed, debug, report))
    assert leaks(tmp_path, text=outputs) == []
