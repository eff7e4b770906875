"""The rules of an OpenAI-compatible endpoint's keys (``conf/frozen/openai_api.yaml``, ``conf/judge/openai_api.yaml``),
checked by the validator before anything loads and by the client itself when it is built (alignpro/models/api.py).
The key's value is never read here: only the *name* of the variable that holds it."""

from __future__ import annotations

import importlib.util
from typing import Any
from urllib.parse import urlparse

from alignpro.config.rules import integer_at_least, number_above
from alignpro.config.schema import ENV_NAME, EXTRA_SAMPLING
from alignpro.run.errors import BadInput


class EndpointError(BadInput):
    """The endpoint a config names cannot be used before any request is sent (no key in its variable, no server
    at the URL, a model it does not serve); the message says what to fix."""


def endpoint_rules(node: Any) -> None:
    """ValueError naming the first key of ``node`` (a config group or a client) that breaks the endpoint's rules."""
    url = urlparse(node.base_url) if isinstance(node.base_url, str) else None
    checks = (
        ("base_url", url is not None and url.scheme in ("http", "https") and bool(url.netloc),
         "must be an http(s) URL of the server's OpenAI root, e.g. http://localhost:8000/v1"),
        ("model", isinstance(node.model, str) and bool(node.model),
         "must name the served model (as the server's /v1/models lists it)"),
        ("max_concurrency", integer_at_least(node.max_concurrency, 1), "must be an integer > 0"),
        ("timeout_s", number_above(node.timeout_s, 0), "must be a number > 0"),
        ("max_retries", integer_at_least(node.max_retries, 0),
         "must be an integer ≥ 0 (extra attempts after a retryable failure)"),
        ("backoff_s", number_above(node.backoff_s, 0, strict=False), "must be a number ≥ 0"),
        ("extra_sampling", node.extra_sampling in EXTRA_SAMPLING, f"valid: {', '.join(EXTRA_SAMPLING)}"),
    )
    for key, ok, valid in checks:
        if not ok:
            raise ValueError(f"{key}={getattr(node, key)!r} is invalid: {valid}")
    env = node.api_key_env
    if env is not None and not (isinstance(env, str) and ENV_NAME.match(env)):
        # The value is not echoed: it may be the key itself, pasted in the wrong place.
        raise ValueError("api_key_env must be the NAME of an environment variable holding the key (e.g. "
                         "OPENAI_API_KEY), or null for a server without authentication; export the key in that "
                         "variable, never put it in a config")


def require_openai() -> None:
    """The ``openai`` package, or one line saying how to install it."""
    if importlib.util.find_spec("openai") is None:
        raise EndpointError("an OpenAI-compatible endpoint (frozen=openai_api, judge=openai_api) needs the `openai` "
                            "package, which is not installed: pip install 'alignpro[api]'")
