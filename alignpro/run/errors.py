"""What a user sees when something goes wrong: one line, ``alignpro: <what and how to fix it>``, and an exit code.

Two kinds of failure, told apart by their exit code:

* :class:`BadInput` (exit 2): the command asked for something that cannot work (a config value, a dataset, a path,
  a missing package, a server the config names that does not answer). Found before any model loads wherever it can
  be; the message names the bad value and what is valid.
* :class:`RunFault` (exit 1): something broke while the job ran (a server that died mid-training, a NaN reward).
  The run dir keeps what was finished, and ``error.txt`` says what happened.

:func:`run_cli` is the one place that turns an exception into that line, for every command (``alignpro.train``,
``alignpro.report``, ``alignpro.data.preferences``, ``alignpro.tools.theory``). A traceback is printed only when asked
for:
``--debug`` on the command line or ``HYDRA_FULL_ERROR=1`` in the environment.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PREFIX = "alignpro: "
WRITE_ERRNOS = (errno.EACCES, errno.EROFS, errno.EPERM, errno.ENOSPC, errno.ENOTDIR)  # a place that takes no files
DEBUG_FLAG = "--debug"


class BadInput(Exception):
    """The input cannot work; the message names the bad value and what is valid. Exit code 2."""

    exit_code = 2


class RunFault(RuntimeError):
    """A fault while the job ran; what it finished is kept. Exit code 1."""

    exit_code = 1


class NonFiniteError(RunFault):
    """A reward or log-probability that is NaN or infinite: the run stops instead of training on it or averaging
    it into a metric; the message names the file the offending sample was saved to."""


class JobFailed(Exception):
    """A sweep job failed; carries its number and overrides so the sweep's one line names the job."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


# Hydra's composition errors spread the valid options over several lines; the plugins the cluster extra installs
# register config options, so a missing plugin shows as a missing option: say which package adds it.
PLUGIN_OPTIONS = {
    "hydra/launcher/submitit_slurm": "hydra-submitit-launcher",
    "hydra/launcher/submitit_local": "hydra-submitit-launcher",
    "hydra/sweeper/optuna": "hydra-optuna-sweeper",
}


def group_options(missing: str) -> list[str]:
    """Every option of the config group that ``missing`` (e.g. ``experiment/paper/qwen25_1_5b_x``) names, subfolders
    included (``paper/qwen25_1_5b_llama31_8b_helpsteer``); files starting with ``_`` are shared parts, not options."""
    from alignpro import CONF_DIR

    root = Path(CONF_DIR) / missing.split("/", 1)[0]
    if "/" not in missing or not root.is_dir():
        return []
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml")
                  if not p.name.startswith("_"))


def _hydra_line(err: Exception) -> str:
    """One line from a Hydra/OmegaConf error: its first line, plus the valid options Hydra lists below it."""
    from hydra.errors import MissingConfigException, OverrideParseException

    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    first = re.sub(r"^In '[^']+': ", "", first)
    missing = re.search(r"Could not find '([^']+)'", first)
    if missing and missing.group(1) in PLUGIN_OPTIONS:
        package = PLUGIN_OPTIONS[missing.group(1)]
        return (f"{first}: it comes from the {package} package, which is not installed; "
                "pip install 'alignpro[cluster]'")
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override {err.override!r}: {' '.join(err.message.split())}"
    options = getattr(err, "options", None) if isinstance(err, MissingConfigException) else None
    if missing and (nested := group_options(missing.group(1))):
        options = nested  # Hydra lists one folder's options; experiment=paper/<cell> lives a folder down
    if options:
        close = difflib.get_close_matches(missing.group(1).split("/", 1)[-1], options, n=1) if missing else []
        hint = f"did you mean {close[0]}? " if close else ""
        return f"{first}; {hint}valid: {', '.join(options)}"
    if "Key '" in text and "is not in struct" in text:  # an override of a key the config does not have
        hint = re.search(r"(To append to your config use \S+)", text)
        return f"{first}: no such key{'; ' + hint.group(1) if hint else ''}"
    return " ".join(text.split())


def describe(err: BaseException) -> tuple[int, str]:
    """The exit code and the one line for ``err``."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, (BadInput, RunFault, JobFailed)):
        return err.exit_code, " ".join(str(err).split())
    if isinstance(err, (HydraException, OmegaConfBaseException)):
        return 2, _hydra_line(err)
    cause = err
    while cause is not None and not isinstance(cause, OSError):  # e.g. logging's "Unable to configure handler"
        cause = cause.__cause__ or cause.__context__
    if cause is not None and cause.errno in WRITE_ERRNOS:
        err = cause
        where = f" {err.filename}" if err.filename else ""
        fix = ("free space there" if err.errno == errno.ENOSPC
               else "choose a writable place (hydra.run.dir=..., --out ...)")
        return 2, f"cannot write{where}: {err.strerror}; {fix}"
    if isinstance(err, ImportError):
        return 2, f"{err}; install what it names (pip install 'alignpro[api]' or 'alignpro[cluster]')"
    return 1, (f"unexpected {type(err).__name__}: {' '.join(str(err).split())} "
               f"(rerun with {DEBUG_FLAG} or HYDRA_FULL_ERROR=1 for the traceback)")


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are :class:`BadInput` (one line, exit 2) instead of its usage text and error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{self.prog}: {message} (see {self.prog} --help)")


def run_cli(main: Callable[[], Any]) -> Any:
    """Run a command's ``main`` and turn any failure into one line on stderr and its exit code.

    ``--debug`` is taken out of ``sys.argv`` here (no command parses it itself). Hydra prints its own stripped
    traceback unless ``HYDRA_FULL_ERROR=1``, so that variable is set for the command: Hydra then re-raises, and the
    line is written here (or, when the user asked for it, the full traceback)."""
    debug = DEBUG_FLAG in sys.argv[1:]
    if debug:
        sys.argv = [a for a in sys.argv if a != DEBUG_FLAG]
    asked = os.environ.get("HYDRA_FULL_ERROR")
    full = debug or asked == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    stderr = sys.stderr
    if not full:
        sys.stderr = _WithoutHydraJobLine(stderr)
    try:
        return main()
    except SystemExit:  # an exit the command chose (--help, the sweep preflight's list): as it is
        raise
    except KeyboardInterrupt:
        close_progress_bars()
        print(f"{PREFIX}interrupted; finished work is kept in the run dir", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except BaseException as err:
        if full:
            raise
        from alignpro.run.secrets import redact_text

        code, line = describe(err)
        close_progress_bars()
        print(redact_text(PREFIX + line), file=sys.stderr, flush=True)
        raise SystemExit(code) from None
    finally:
        sys.stderr = stderr
        if asked is None:  # as it was: an in-process caller (a notebook, a test) keeps its own setting
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = asked


def close_progress_bars() -> None:
    """Close the progress bars a failed command left open (a trainer's, mid-step): tqdm draws an open bar once more
    when the interpreter exits, which would put it after the one line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


class _WithoutHydraJobLine:
    """stderr without the line Hydra writes before it re-raises a job's exception ("Error executing job with
    overrides: [...]"): the one line written by :func:`run_cli` names the job itself."""

    HYDRA_LINE = "Error executing job with overrides:"

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        return len(text) if text.startswith(self.HYDRA_LINE) else self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
