"""What a failed request to an OpenAI-compatible endpoint means, and the errors that say so: each SDK failure is
classified as retryable (timeouts, connection errors, HTTP 408/409/429 and 5xx, a response without any message
content) or not (any other 4xx, with a hint saying what to fix), and :func:`check_endpoint` turns a server that is
down, a model it does not serve or a key it refuses into one line before anything loads. Used by
:class:`alignpro.models.api.ChatClient`; the ``openai`` package is imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alignpro.config.endpoint import EndpointError, require_openai
from alignpro.run.errors import RunFault

if TYPE_CHECKING:
    from alignpro.models.api import ChatClient

RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx
PREFLIGHT_TIMEOUT_S = 15.0  # the start-up check waits at most this long for a server (or timeout_s when shorter)
# What to check when the server refuses a request outright (the status says the request itself is wrong).
STATUS_HINTS = {
    400: "the server refused the request: check `model` (a server pinned to one model refuses others) and the "
         "sampling fields",
    401: "authentication failed: check the key in the environment variable named by `api_key_env`",
    403: "the key is not allowed to use this model or endpoint",
    404: "not found: check `base_url` (it usually ends in /v1) and that the server serves `model`",
    422: "the server rejected a field: for `transformers serve` set extra_sampling=generation_config, for a "
         "hosted API extra_sampling=none",
}


class ChatAPIError(RunFault):
    """A chat request failed for good (or could not be sent); the message names the server, model and reason."""


class Failure(Exception):
    """One failed attempt: why, whether a retry may help, and how long the server asked us to wait."""

    def __init__(self, reason: str, retryable: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retryable, self.retry_after = reason, retryable, retry_after


def answer_text(resp: Any) -> str:
    """The answer text of a chat completion; a body of another shape (a proxy's HTML page, no choices, a refusal
    or tool call without text) is a failed attempt, never an empty answer."""
    choices = getattr(resp, "choices", None)
    if not choices:
        raise Failure(f"malformed response without choices: {str(resp)[:200]!r}", True)
    text = getattr(getattr(choices[0], "message", None), "content", None)
    if not isinstance(text, str):
        finish = getattr(choices[0], "finish_reason", None)
        raise Failure(f"response has no message content (finish_reason={finish})", True)
    return text


def classify(err: Exception, timeout_s: float) -> Failure:
    """One failed SDK call as a :class:`Failure`: its reason, whether a retry may help, and the server's
    ``Retry-After``."""
    import openai

    if isinstance(err, openai.APITimeoutError):
        return Failure(f"timed out after {timeout_s:g}s", True)
    if isinstance(err, openai.APIConnectionError):
        cause = err.__cause__ or err.__context__ or err
        return Failure(f"connection error: {type(cause).__name__}: {cause}", True)
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        retry_after = None
        try:
            retry_after = float(err.response.headers.get("retry-after"))
        except (TypeError, ValueError):
            pass
        reason = f"HTTP {status}: {str(err.message)[:500]}"
        retryable = status in RETRY_STATUS or status >= 500
        if not retryable and status in STATUS_HINTS:
            reason += f" ({STATUS_HINTS[status]})"
        return Failure(reason, retryable, retry_after)
    return Failure(f"{type(err).__name__}: {err}", False)  # the SDK refused the request itself: no retry


def check_endpoint(chat: ChatClient, group: str) -> None:
    """One cheap request before anything loads, so that a server that is down, a model it does not serve or
    a key it refuses is one line now, not a failure after the models have loaded. ``GET /models`` first; when
    the server does not list the model (or has no such route), a 1-token completion decides. ``group`` (the
    config group, ``frozen`` or ``judge``) names the keys to fix."""
    require_openai()
    import openai

    key = chat.api_key()
    where = f"{group}: {chat.base_url} (model {chat.model!r})"
    client = openai.OpenAI(base_url=chat.base_url, api_key=key, timeout=min(chat.timeout_s, PREFLIGHT_TIMEOUT_S),
                           max_retries=0)

    def refused(err: Exception) -> EndpointError:
        if isinstance(err, openai.APIConnectionError):  # includes timeouts
            cause = err.__cause__ or err
            return EndpointError(chat.scrub(
                f"{where}: no server answers ({type(cause).__name__}: {' '.join(str(cause).split())[:200]}); "
                f"start it, or fix {group}.base_url"))
        if isinstance(err, openai.APIStatusError):
            fix = {401: f"the key in ${chat.api_key_env} was refused: export the right key there"
                        if chat.api_key_env else f"the server needs a key: set {group}.api_key_env",
                   403: f"the key in ${chat.api_key_env} may not use this model",
                   404: f"the server does not serve this model: fix {group}.model (or {group}.base_url, "
                        "which usually ends in /v1)"}.get(err.status_code, STATUS_HINTS.get(err.status_code, ""))
            return EndpointError(chat.scrub(f"{where}: HTTP {err.status_code} ({fix or 'refused'})"))
        return EndpointError(chat.scrub(f"{where}: {type(err).__name__}: {err}"))

    try:
        listed = [m.id for m in client.models.list()]
    except openai.APIStatusError as err:
        if err.status_code in (401, 403):
            raise refused(err) from None
        listed = []  # no /models route (or a broken one): the completion below decides
    except openai.OpenAIError as err:
        raise refused(err) from None
    if chat.model in listed:
        return
    try:  # not listed: some servers (transformers serve) list their cache, not what they can serve
        client.chat.completions.create(model=chat.model, max_tokens=1,
                                       messages=[{"role": "user", "content": "Hi"}])
    except openai.APIStatusError as err:
        if err.status_code in (400, 404) and listed:
            raise EndpointError(chat.scrub(
                f"{where}: the server does not serve this model; it serves: {', '.join(listed[:8])}; "
                f"set {group}.model to one of them")) from None
        raise refused(err) from None
    except openai.OpenAIError as err:
        raise refused(err) from None



