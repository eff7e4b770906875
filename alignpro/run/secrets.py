"""Secrets are read from the environment and never written: how they are spotted, and redacted from anything that
is saved or shown (config files, W&B, ``error.txt``, error lines).

A secret is the value of a config key that looks like one (``api_key``, ``token``, …: such keys are refused in a
config, :func:`alignpro.config.validate.validate`), the value of an environment variable whose name looks like one
(``OPENAI_API_KEY``, ``WANDB_API_KEY``, ``HF_TOKEN``), or the value of a variable a config *names* as holding a key
(``frozen.api_key_env: MY_LLM_CREDENTIAL``): :func:`declare_key_env` adds such a name, when the client that reads it
is built.
"""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_KEY = re.compile(r"(api_?key|token|secret|password|passwd)$", re.IGNORECASE)
# A command-line override of such a key, e.g. "+logger.api_key=abc": the value runs to a separator, a quote or a
# bracket; a placeholder ("=...", "=<...>") in a message is left as it is.
SECRET_OVERRIDE = re.compile(r"([\w.+~/]*(?:api_?key|token|secret|password|passwd))=(?!\.\.\.|<)[^\s,;'\"()\[\]]+",
                             re.IGNORECASE)
MIN_SECRET_CHARS = 8  # shorter values ("1", "true") would redact ordinary words
_key_envs: set[str] = set()


def declare_key_env(name: str | None) -> None:
    """``name`` holds a key (a config's ``api_key_env``): its value is redacted like any secret's."""
    if name:
        _key_envs.add(name)


def secret_env_names() -> list[str]:
    return sorted(n for n in os.environ if SECRET_KEY.search(n) or n in _key_envs)


def redact(obj: Any) -> Any:
    """A copy of a plain config tree with secret-looking values replaced (names ending in ``_env`` are kept:
    they hold the *name* of an environment variable, not its value)."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def redact_overrides(text: str) -> str:
    """``key=value`` overrides of secret-looking keys with their value replaced."""
    return SECRET_OVERRIDE.sub(lambda m: f"{m.group(1)}=<redacted>", text)


def redact_text(text: str) -> str:
    """Free text (an error message, a log line) with ``key=value`` secrets and the values of secret environment
    variables replaced (by ``<NAME>``), so it can be written to disk or W&B."""
    text = redact_overrides(text)
    for name in secret_env_names():
        value = os.environ.get(name, "")
        if len(value) >= MIN_SECRET_CHARS and value in text:
            text = text.replace(value, f"<{name}>")
    return text
