"""The suite's own machinery: a command forked warm (tests/cli.py) behaves as the same command started cold, a missing
package fails in CI, and work shared between test modules is built once."""

import os
import subprocess
import sys

import pytest

from tests import cli
from tests.conftest import shared_once, unavailable


@pytest.fixture
def probe_module(tmp_path):
    """A module printing what a process can see of itself, then exiting as argv[1] says."""
    pkg = tmp_path / "probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "probe.py").write_text(
        "import atexit, json, os, sys, threading, time\n"
        "atexit.register(lambda: print('atexit ran', flush=True))\n"
        "t = threading.Thread(target=lambda: (time.sleep(0.2), print('thread joined', flush=True)))\n"
        "t.start()\n"
        "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), 'name': __name__, 'pid': os.getpid(),\n"
        "                  'env': os.environ.get('PROBE_VALUE'), 'stdin': sys.stdin.read()}))\n"
        "print('to stderr', file=sys.stderr)\n"
        "how = sys.argv[1]\n"
        "if how == 'raise': raise ValueError('boom')\n"
        "if how == 'message': sys.exit('a message')\n"
        "sys.exit(int(how))\n")
    return tmp_path


@pytest.mark.parametrize("how,code", [("0", 0), ("3", 3), ("raise", 1), ("message", 1)])
def test_a_warm_command_behaves_as_a_cold_one(probe_module, how, code):
    import json

    env = {**os.environ, "PROBE_VALUE": "seen"}
    results = [cli.run("probe_pkg.probe", how, "--flag", cwd=probe_module, env=env, cold=cold)
               for cold in (True, False)]
    for proc in results:
        assert proc.returncode == code, proc.stderr
        first, *rest = proc.stdout.splitlines()
        seen = json.loads(first)
        assert seen["argv"] == [how, "--flag"] and seen["cwd"] == str(probe_module) and seen["name"] == "__main__"
        assert seen["env"] == "seen" and seen["stdin"] == "" and seen["pid"] != os.getpid()
        assert rest == ["thread joined", "atexit ran"]  # the interpreter's exit: threads joined, then atexit
        assert proc.stderr.startswith("to stderr\n")
    cold, warm = results
    assert cold.stderr.splitlines()[-1] == warm.stderr.splitlines()[-1]  # the same message, or exception, or nothing
    if how == "raise":  # a traceback down to the line that raised (runpy's frames above it differ)
        assert "Traceback (most recent call last)" in warm.stderr and 'probe.py", line 9, in <module>' in warm.stderr
        assert warm.stderr.endswith("ValueError: boom\n")
    if how == "message":
        assert warm.stderr.endswith("to stderr\na message\n")


def test_a_warm_command_times_out_and_is_killed(probe_module):
    sleeper = probe_module / "probe_pkg" / "sleeper.py"
    sleeper.write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    with pytest.raises(subprocess.TimeoutExpired) as info:
        cli.run("probe_pkg.sleeper", cwd=probe_module, timeout=5)
    assert b"started" in info.value.output


def test_an_environment_the_imports_read_runs_cold():
    assert "HF_HOME" in cli.warm_env_differs({**os.environ, "HF_HOME": "/elsewhere"})
    assert "PYTHONIOENCODING" in cli.warm_env_differs({**os.environ, "PYTHONIOENCODING": "latin-1"})
    assert cli.warm_env_differs({**os.environ, "ALIGNPRO_CACHE": "/x", "WANDB_MODE": "offline"}) == []
    assert cli.warm_env_differs({**os.environ, "PYTHONPATH": sys.path[-1]}) == []  # already on the server's path
    # a module the server imported is still imported cold when the environment says so
    proc = cli.run("alignpro.train", "--cfg", "job", env={**os.environ, "HF_HUB_OFFLINE": "0"})
    assert proc.returncode == 0 and "lam:" in proc.stdout


def test_a_missing_package_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no such package"):
        unavailable("no such package")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no such package.*CI=true"):
        unavailable("no such package")


def test_shared_work_is_built_once(tmp_path_factory):
    built = []

    def build(path):
        built.append(path)
        path.mkdir()

    first = shared_once(tmp_path_factory, "harness-probe", build)
    assert shared_once(tmp_path_factory, "harness-probe", build) == first and first.is_dir()
    assert len(built) == 1
