"""What a user sees when something goes wrong: one line, ``alignpro: <what and how to fix it>``, and an exit code.

Two kinds of failure, told apart by their exit code:

* :class:`BadInput` (exit 2): the command asked for something that cannot work (a config value, a dataset, a path,
  a missing package, a server the config names that does not answer). Found before any model loads wherever it can
  be; the message names the bad value and what is valid.
* :class:`RunFault` (exit 1): something broke while the job ran (a server that died mid-training, a NaN reward).
  The run dir keeps what was finished, and ``error.txt`` says what happened.

:func:`run_cli` is the one place that turns an exception into that line, for every command (``alignpro.train``,
``alignpro.report``, ``alignpro.data``, ``alignpro.tools.theory``). A traceback is printed only when asked
for:
``--debug`` on the command line or ``HYDRA_FULL_ERROR=1`` in the environment.

A library's exception is sorted by type and origin, never by its text: (1) code that knows the value behind it says
so (:func:`alignpro.models.assets.hub_access`: model id and role; :func:`alignpro.run.directory.make_dir`: the folder
and its setting); (2) :data:`LIBRARY_ERRORS` maps a library's exception family (class path, looked up along the MRO
and the ``raise ... from`` causes) to an exit code and a fix; (3) a ValueError or OSError raised inside Hydra before it
calls our code (its flag checks, the run dir it makes) is a usage error. Anything else is a bug: "unexpected", exit 1.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Known:
    """What an exception family of a library means to a user: exit code, what happened to the thing that failed
    (said after its name) and the fix; ``{id}``, ``{hub}`` and ``{offline}`` are filled in by :meth:`said`."""

    exit_code: int
    what: str
    fix: str

    def said(self, subject: str, model_id: str = "<id>", offline: str | None = None) -> str:
        """The line: ``subject`` (e.g. ``reward.model_id='org/rm'``), what happened, the fix; ``offline`` names the
        configs that need no hub (e.g. ``the default configs, e.g. reward=bt_minilm``)."""
        fill = {"id": model_id, "hub": _hub_state(), "offline": offline or "the default configs"}
        return f"{subject} {self.what.format(**fill)}; {self.fix.format(**fill)}"


HUB_FIX = ("download it first where the hub is reachable (`hf download {id}` with HF_HUB_OFFLINE unset), point HF_HOME "
           "at a cache that holds it, or pick an offline source ({offline})")
HUB_LOGIN = "a login that may read it (hf auth login, or HF_TOKEN)"

# Exception families of the libraries underneath, by class path (no import: a library absent is a family never met).
# Looked up along each class's MRO, most derived first, so a subclass may have its own row (GatedRepoError before
# RepositoryNotFoundError). A new family of an existing library lands in its parent's row until it gets its own.
LIBRARY_ERRORS: dict[str, Known] = {
    # Not cached and the hub cannot be asked: transformers' "We couldn't connect to 'https://huggingface.co'".
    "huggingface_hub.errors.LocalEntryNotFoundError": Known(2, "is not in the local hub cache and {hub}", HUB_FIX),
    "huggingface_hub.errors.OfflineModeIsEnabled": Known(2, "is not in the local hub cache and {hub}", HUB_FIX),
    "huggingface_hub.errors.GatedRepoError": Known(
        2, "is a gated hub repository", f"accept its terms at https://huggingface.co/{{id}} and use {HUB_LOGIN}"),
    "huggingface_hub.errors.RepositoryNotFoundError": Known(
        2, "is neither a local folder nor a repository on the hub",
        f"check the id (or the folder's path); a private repository needs {HUB_LOGIN}"),
    "huggingface_hub.errors.RevisionNotFoundError": Known(
        2, "has no such revision on the hub", "see its branches and tags at https://huggingface.co/{id}"),
    "huggingface_hub.errors.HFValidationError": Known(
        2, "is neither an existing local folder nor a valid hub id (owner/name)", "check the path or the id"),
    # Any other answer of the hub (a 5xx, a rate limit) is a fault of the moment, not of the input: exit 1.
    "huggingface_hub.errors.HfHubHTTPError": Known(
        1, "could not be fetched: the hub answered with an error",
        "retry later, or point HF_HOME at a cache that holds it"),
}


def _hub_state() -> str:
    """Why the hub was not asked: the variable that turns it off, else the connection."""
    flags = [v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
             if os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")]
    return f"{flags[0]}={os.environ[flags[0]]} keeps the hub off" if flags else "the hub cannot be reached"


def causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and its explicit causes (``raise ... from``), outermost first. Implicit contexts are left out: an
    exception raised while another was being handled need not come from it."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__


def known(err: BaseException) -> tuple[BaseException, Known] | None:
    """The first exception in ``err``'s causes that belongs to a family of :data:`LIBRARY_ERRORS`, and its row."""
    for e in causes(err):
        for cls in type(e).__mro__:
            row = LIBRARY_ERRORS.get(f"{cls.__module__}.{cls.__qualname__}")
            if row is not None:
                return e, row
    return None


HYDRA_PACKAGES = ("hydra", "hydra_plugins")  # Hydra and its launcher/sweeper plugins


def raised_by_hydra(err: BaseException) -> bool:
    """Whether ``err`` came out of Hydra's own code (or the standard library it called, e.g. ``os.mkdir``) with no
    other code between: its flag checks and the folders it makes before it calls the task function. A job's
    exception passes through Hydra too, but from our frames (or a library's), so it is not counted."""
    modules = [frame.f_globals.get("__name__", "").split(".")[0] for frame, _ in traceback.walk_tb(err.__traceback__)]
    first = next((i for i, m in enumerate(modules) if m in HYDRA_PACKAGES), None)
    own = (*HYDRA_PACKAGES, "omegaconf", *sys.stdlib_module_names)
    return first is not None and all(m in own for m in modules[first:])


def requeued_by_submitit(err: SystemExit) -> bool:
    """Whether ``err`` is the exit submitit's handler of SLURM's ``--signal`` makes once it has requeued the job (its
    frame is in the traceback; W&B's exit hook, which wraps ``sys.exit`` in a run, may sit below it)."""
    return any(frame.f_globals.get("__name__", "").startswith("submitit.")
               and frame.f_code.co_name in ("checkpoint_and_try_requeue", "_exit")
               for frame, _ in traceback.walk_tb(err.__traceback__))


def describe(err: BaseException) -> tuple[int, str]:
    """The exit code and the one line for ``err``."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, (BadInput, RunFault, JobFailed)):
        return err.exit_code, " ".join(str(err).split())
    if isinstance(err, SystemExit) and requeued_by_submitit(err):
        return 1, ("preempted: SLURM signalled the job and the submitit launcher requeued it; the requeued job resumes "
                   "from its newest checkpoint (resume=auto)")
    if isinstance(err, (HydraException, OmegaConfBaseException)):
        return 2, _hydra_line(err)
    if (hit := known(err)) is not None:  # no loader named the model (alignpro.models.assets.hub_access would)
        return hit[1].exit_code, hit[1].said(f"a hub model or file ({type(hit[0]).__name__})")
    # Hydra checks its own flags (--multirun with --cfg) and makes the run dir before any of our code runs: a
    # ValueError there is a bad command line, an OSError a hydra.run.dir / hydra.sweep.dir that cannot be a folder
    # (whatever its errno: /proc/x is ENOENT). Other types raised there stay bugs.
    hydra_made = raised_by_hydra(err)
    if isinstance(err, ValueError) and hydra_made:
        return 2, f"{' '.join(str(err).split())} (see --help)"
    cause = err
    while cause is not None and not isinstance(cause, OSError):  # e.g. logging's "Unable to configure handler"
        cause = cause.__cause__ or cause.__context__
    if cause is not None and (cause.errno in WRITE_ERRNOS or (cause is err and hydra_made)):
        err = cause
        where = f" {err.filename}" if err.filename else ""
        fix = ("free space there" if err.errno == errno.ENOSPC
               else "choose a writable place (hydra.run.dir=..., --out ...)")
        return 2, f"cannot write{where}: {err.strerror or err}; {fix}"
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
