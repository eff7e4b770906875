"""alignpro.run.errors: an exception becomes one line and an exit code; a traceback only when asked for."""

import errno
import os
import subprocess
import sys

import pytest

from alignpro.run.errors import ArgumentParser, BadInput, JobFailed, NonFiniteError, RunFault, describe, run_cli
from tests.conftest import ROOT


def test_each_kind_of_error_gets_its_exit_code_and_one_line():
    assert describe(BadInput("lam=-1 is invalid:\n  must be > 0")) == (2, "lam=-1 is invalid: must be > 0")
    assert describe(NonFiniteError("reward=nan"))[0] == 1 and issubclass(NonFiniteError, RunFault)
    assert describe(JobFailed("sweep job 1 failed", 2)) == (2, "sweep job 1 failed")
    code, line = describe(PermissionError(errno.EACCES, "Permission denied", "/ro/run"))
    assert code == 2 and line.startswith("cannot write /ro/run: Permission denied")
    code, line = describe(KeyError("boom"))
    assert code == 1 and line.startswith("unexpected KeyError") and "--debug" in line


def test_an_oserror_behind_another_error_is_named():
    try:
        try:
            raise PermissionError(errno.EROFS, "Read-only file system", "/ro/train.log")
        except OSError as inner:
            raise ValueError("Unable to configure handler 'file'") from inner
    except ValueError as err:
        assert describe(err) == (2, "cannot write /ro/train.log: Read-only file system; choose a writable place "
                                    "(hydra.run.dir=..., --out ...)")


def test_argparse_errors_are_bad_input():
    ap = ArgumentParser(prog="python -m alignpro.x")
    ap.add_argument("--kind", choices=("a", "b"))
    with pytest.raises(BadInput, match=r"argument --kind: invalid choice: 'c' \(choose from 'a', 'b'\)"):
        ap.parse_args(["--kind", "c"])


def test_run_cli_prints_one_line_and_exits_with_the_code(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["x"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def fails():
        raise BadInput("--n -1 is invalid: it must be ≥ 0")

    with pytest.raises(SystemExit) as exit_:
        run_cli(fails)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "alignpro: --n -1 is invalid: it must be ≥ 0\n"


def test_debug_flag_gives_the_traceback_and_is_taken_out_of_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["x", "--debug", "a"])
    seen = []

    def fails():
        seen.append(list(sys.argv))
        raise RunFault("server died")

    with pytest.raises(RunFault, match="server died"):
        run_cli(fails)
    assert seen == [["x", "a"]]


def test_run_cli_leaves_the_environment_as_it_found_it(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["x"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert run_cli(lambda: os.environ.get("HYDRA_FULL_ERROR")) == "1"  # Hydra re-raises to run_cli meanwhile
    assert "HYDRA_FULL_ERROR" not in os.environ


def test_a_real_command_hides_its_traceback_unless_asked():
    cmd = [sys.executable, "-m", "alignpro.data.preferences", "--n", "-1"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    plain = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    debug = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert plain.returncode == 2 and plain.stderr == "alignpro: --n -1 is invalid: it must be ≥ 0\n"
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
