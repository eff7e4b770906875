"""alignpro's cache: one folder (``ALIGNPRO_CACHE``) of what runs build once and reuse (GGUF exports, tiny and
miniature models, paper tokenizers, trained reward heads, ρ_sft), and the one way anything enters it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from alignpro.run.directory import make_dir


def cache_dir() -> Path:
    """Root of alignpro's cache (exports, trained reward heads, tiny models). ``ALIGNPRO_CACHE`` overrides it."""
    root = os.environ.get("ALIGNPRO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "alignpro"
    )
    return make_dir(Path(root), "cache dir", "set ALIGNPRO_CACHE to a writable folder")


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts: the cache key of anything the suite trains once and reuses."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_once(target: Path, build: Callable[[Path], None], ready: str = "config.json") -> Path:
    """``target``, built by ``build(tmp)`` unless it already exists: the one way anything enters the cache.

    Jobs of a sweep start together on the same empty cache, so each entry gets one builder: a file lock on the
    sibling ``<target>.lock`` (left on disk afterwards, as filelock does; it is empty and harmless), a re-check under
    it (the job we waited for may have built it), a build into a fresh temp sibling, and one rename onto ``target``
    when the build is complete. Readers test ``target/ready`` without the lock: the rename makes the whole folder
    appear at once, so a folder with its ready file is always complete. A failed build leaves neither temp dir nor
    target, and the next call builds again.
    """
    if (target / ready).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(target.with_name(f"{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:  # say so, or a job that waits minutes for another's export looks hung
        print(f"[alignpro] waiting for another job building {target}", flush=True)
        lock.acquire()
    try:
        if (target / ready).is_file():
            return target
        # Under the lock nobody else builds this target: temp dirs and a target without its ready file are
        # leftovers of a killed job.
        for stale in [*target.parent.glob(f".{target.name}.tmp*"), target]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.mkdir()
        try:
            build(tmp)
            if not (tmp / ready).is_file():
                raise RuntimeError(f"building {target} wrote no {ready}, so it would never count as built")
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        lock.release()
    return target
