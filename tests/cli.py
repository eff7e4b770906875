"""alignpro's commands, run from the tests as real processes that start warm.

``run("alignpro.train", "lam=0.3")`` is ``subprocess.run([python, "-m", "alignpro.train", "lam=0.3"])``: a new
process with its own pid, argv, working directory, environment and file descriptors, whose exit code, stdout and
stderr come back as a :class:`subprocess.CompletedProcess`. What differs is where it starts. The standard library's
fork server (``multiprocessing``'s ``forkserver``) imports torch, transformers, TRL, Hydra and alignpro once
per test process, runs no torch operation there (so no thread pool exists to be forked), and forks each command from
that state: a command pays for its own work, not for the ≈ 5 s of imports every ``python -m alignpro.train`` pays.
Its end is the interpreter's: non-daemon threads joined, ``atexit`` handlers run, streams flushed, the exit code of
``SystemExit`` (or 1 and a traceback for an uncaught exception).

A command runs cold, through :mod:`subprocess` itself, when its environment changes what those imports read
(``PYTHON*``, ``HF_*``, ``TRANSFORMERS_*``, ``TORCH*``, thread settings ...) and when a test asks for ``cold=True``:
the tests of start-up itself (what the entry point imports, an optional package missing).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Imported once in the fork server; each is what a command would import anyway. Not W&B: importing it makes a
# temporary folder for its media that the first command to exit would delete for all the others.
PRELOAD = ["torch", "transformers", "trl", "peft", "datasets", "hydra", "omegaconf", "matplotlib.pyplot",
           "alignpro.train", "alignpro.methods.registry", "alignpro.methods.rl", "alignpro.models.frozen",
           "alignpro.models.reward", "alignpro.report.evaluate", "alignpro.report.summary", "alignpro.report.cli",
           "alignpro.report.compare",
           # Hydra imports every plugin module on each start to find its launchers and sweepers: about 0.8 s of a
           # 1.2 s `--cfg job` (the forkserver skips a name that does not import)
           "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
           "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper", "hydra_plugins.hydra_optuna_sweeper._impl"]
# Variables read when those modules are imported: a command that changes one runs cold.
# (Not KMP_*: scikit-learn sets KMP_DUPLICATE_LIB_OK when a test imports it, and torch's CPU wheel uses GNU OpenMP.)
IMPORT_TIME_ENV = ("PYTHON", "HF_", "HUGGINGFACE", "TRANSFORMERS", "TORCH", "OMP_", "MKL_", "CUDA",
                   "TOKENIZERS", "LD_", "XDG_", "MPLBACKEND", "MPLCONFIGDIR")

_server: dict = {}


def _context():
    if not _server:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _server.update(ctx=ctx, env=dict(os.environ))
    return _server["ctx"]


def warm_env_differs(env: Mapping[str, str]) -> list[str]:
    """The variables by which ``env`` differs from the fork server's in a way its imports would have read."""
    base = _server.get("env", dict(os.environ))
    keys = set(env) ^ set(base) | {k for k in env.keys() & base.keys() if env[k] != base[k]}
    if set(env.get("PYTHONPATH", "").split(os.pathsep)) - {""} <= set(sys.path):
        keys.discard("PYTHONPATH")  # the server's sys.path holds it already (the tests' root, typically)
    return sorted(k for k in keys if k.upper().startswith(IMPORT_TIME_ENV))


def _child(module: str, args: list[str], cwd: str, env: dict, out: str, err: str) -> None:  # in the forked process
    import runpy
    import threading
    import traceback

    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY), (2, err, os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.path[0:0] = [cwd]  # as `python -m` puts the working directory first
    sys.argv = [module, *args]
    sys.modules.pop(module, None)  # preloaded as a module; `python -m` runs it fresh as __main__, as here
    code: object = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
    except BaseException:  # what the interpreter prints for an uncaught exception
        traceback.print_exc()
        code = 1
    try:  # what the interpreter does on its way out
        threading._shutdown()
        import atexit

        atexit._run_exitfuncs()
    finally:
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def run(module: str, *args: str, cwd: str | Path = ROOT, env: Mapping[str, str] | None = None,
        timeout: float = 600, check: bool = False, cold: bool = False) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in ``cwd`` with ``env`` (default: this process's); text stdout and stderr."""
    env = dict(os.environ if env is None else env)
    argv = [sys.executable, "-m", module, *map(str, args)]
    if cold or warm_env_differs(env):
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=check)
    ctx = _context()
    with tempfile.TemporaryDirectory(prefix="alignpro-cli-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        out.touch()
        err.touch()
        proc = ctx.Process(target=_child, args=(module, [str(a) for a in args], str(cwd), env, str(out), str(err)))
        proc.start()
        proc.join(timeout)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired(argv, timeout, out.read_bytes(), err.read_bytes())
        done = subprocess.CompletedProcess(argv, proc.exitcode, out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))
    if check:
        done.check_returncode()
    return done
