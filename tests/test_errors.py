"""alignpro.run.errors: an exception becomes one line and an exit code; a traceback only when asked for."""

import errno
import os
import subprocess
import sys

import pytest

from alignpro.run.errors import ArgumentParser, BadInput, JobFailed, NonFiniteError, RunFault, describe, run_cli
from tests import cli
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


def test_a_submitit_requeue_is_named_as_a_preemption_not_a_bug():
    """submitit's handler of SLURM's signal requeues the job, then exits it with SystemExit(-1) from its own code: the
    job's error.txt says it was preempted and will resume, until the requeued job clears it."""
    import logging

    from submitit.core.job_environment import SignalHandler

    handler = SignalHandler.__new__(SignalHandler)
    handler._logger = logging.getLogger("submitit-test")
    with pytest.raises(SystemExit) as requeued:
        handler._exit()  # the exit submitit's signal handler makes once it has requeued the job
    code, line = describe(requeued.value)
    assert code == 1 and line.startswith("preempted:") and "resumes from its newest checkpoint" in line
    try:
        sys.exit(-1)  # the same exit from other code stays unexpected
    except SystemExit as other:
        assert describe(other)[1].startswith("unexpected SystemExit")
    # in a run, W&B's exit hook wraps sys.exit: its frame is then the innermost, submitit's still in the traceback
    import wandb.sdk.lib.exit_hooks as exit_hooks

    hooks, excepthook = exit_hooks.ExitHooks(), sys.excepthook
    hooks.hook()
    try:
        with pytest.raises(SystemExit) as hooked:
            handler._exit()
    finally:
        sys.exit, sys.excepthook = hooks._orig_exit, excepthook
    assert describe(hooked.value)[1].startswith("preempted:")


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
    cmd = ["alignpro.data", "--n", "-1"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    plain = cli.run(*cmd, env=env, timeout=120)
    debug = cli.run(*cmd, "--debug", env=env, timeout=120)
    assert plain.returncode == 2 and plain.stderr == "alignpro: --n -1 is invalid: it must be ≥ 0\n"
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


# -- a library's exception is sorted by its family and origin (alignpro/run/errors.py's docstring) ----------------

def train(*args: str, cwd) -> subprocess.CompletedProcess:
    """``python -m alignpro.train <args>`` as a user runs it (offline, no HYDRA_FULL_ERROR, no W&B)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "WANDB_SERVICE")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return cli.run("alignpro.train", *args, cwd=cwd, env=env, timeout=180)


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("alignpro: "), proc.stderr[-3000:]
    assert "unexpected" not in lines[0] and "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


def test_hydra_usage_error_before_our_code_is_bad_input(tmp_path):
    line = one_line(train("--multirun", "--cfg", "job", cwd=tmp_path))
    assert line == ("alignpro: Only one of --run, --multirun, --cfg, --info and --shell_completion can be specified "
                    "(see --help)")


def test_run_dir_hydra_cannot_create_is_bad_input(tmp_path):
    line = one_line(train("experiment=smoke", "logger.backend=none", "hydra.run.dir=/proc/alignpro_x", cwd=tmp_path))
    assert line == ("alignpro: cannot write /proc/alignpro_x: No such file or directory; choose a writable place "
                    "(hydra.run.dir=..., --out ...)")


def test_hub_model_not_cached_offline_names_the_model_its_role_and_the_fixes(tmp_path):
    line = one_line(train("experiment=smoke", "logger.backend=none", "reward=rm_gemma_2b",
                        f"hydra.run.dir={tmp_path}/run", cwd=tmp_path))
    for part in ("reward.model_id='weqweasdas/RM-Gemma-2B'", "HF_HUB_OFFLINE=1", "hf download weqweasdas/RM-Gemma-2B",
                 "HF_HOME", "reward=bt_minilm"):
        assert part in line, (part, line)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_library_families_are_found_along_the_mro_and_the_causes():
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError

    try:  # transformers' cached_file: a plain OSError raised from the hub's error
        try:
            raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache")
        except LocalEntryNotFoundError as inner:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from inner
    except OSError as err:
        code, line = describe(err)
    assert code == 2 and "not in the local hub cache" in line and "HF_HOME" in line
    code, line = describe(GatedRepoError("403 gated", response=_response(403)))  # its own row, not its parent's
    assert code == 2 and "gated" in line and "hf auth login" in line


def _response(status: int):
    import httpx

    return httpx.Response(status, request=httpx.Request("GET", "https://huggingface.co/org/m/resolve/main/config.json"))


def test_a_bug_stays_unexpected_even_when_it_passes_through_hydra(monkeypatch):
    from hydra._internal.utils import run_and_report

    from alignpro.models.assets import resolve_dtype

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # Hydra re-raises as it does under run_cli
    with pytest.raises(ValueError) as caught:
        run_and_report(lambda: resolve_dtype("float8", "cpu"))  # a ValueError of our code, called by Hydra
    code, line = describe(caught.value)
    assert code == 1 and line.startswith("unexpected ValueError: dtype 'float8' is not supported")
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # an exception raised while a hub error was handled, not from it: still a bug
        try:
            raise LocalEntryNotFoundError("not cached")
        except LocalEntryNotFoundError:
            raise KeyError("boom")  # noqa: B904
    except KeyError as err:
        assert describe(err)[0] == 1
