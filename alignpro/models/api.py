"""One client for every model behind an OpenAI-compatible chat endpoint: the frozen model (``frozen=openai_api``)
and the LLM judge (``judge=openai_api``).

Design:

* **Transport** is the ``openai`` SDK's ``AsyncOpenAI`` (the package ``transformers serve`` itself builds on); the
  public call is synchronous, :meth:`ChatClient.complete`, which runs one asyncio event loop per call with at most
  ``max_concurrency`` requests in flight (an ``asyncio.Semaphore``) and returns the answers in input order.
* **Retries are ours, not the SDK's** (``max_retries=0`` on the SDK client), so that every attempt, retry and
  failure is counted in :class:`RequestStats` and logged with its reason. What is retried is decided by
  :func:`alignpro.models.api_failures.classify`; the delay is ``backoff_s · 2^(retry−1)`` (capped, with a little
  jitter against lock-step retries), or the server's ``Retry-After`` when that is longer.
* **Never a silent empty answer**: a request that finally fails raises :class:`ChatAPIError` naming the base URL,
  the model and the last error; nothing is ever filled in for it. An answer that *is* an empty string (the model
  stopped at once) is returned as the model's answer, but counted (``stats.empty``) and logged.
* **Sampling** (:class:`alignpro.models.sampling.Sampling`, D8): ``temperature``/``top_p`` map directly and
  ``max_new_tokens`` becomes ``max_tokens``. ``top_k`` is not in the OpenAI schema, so how it travels is the
  ``extra_sampling`` setting, per server: ``top_k`` sends it as an extra body field (vLLM, SGLang, llama.cpp);
  ``generation_config`` sends a ``transformers.GenerationConfig`` as JSON (``transformers serve`` rejects a bare
  ``top_k`` with HTTP 422, and without an explicit ``do_sample`` it decodes greedily whatever the temperature);
  ``none`` sends the standard fields only (hosted APIs, which reject unknown fields): a ``top_k > 0`` is then
  dropped, with one warning per client.
* **Secrets**: the key is read from the environment variable *named* by ``api_key_env`` at call time and held
  nowhere else: not in the client's fields or ``repr``, not in logs, and scrubbed from every error message
  (a server may echo what it was sent). ``api_key_env: null`` is for servers without authentication (a local
  vLLM or ``transformers serve``): a dummy key is sent.

The ``openai`` package is imported lazily, so the rest of alignpro works without it (``pip install alignpro[api]``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from alignpro.config.endpoint import endpoint_rules
from alignpro.models.api_failures import (
    ChatAPIError,
    EndpointError,
    Failure,
    answer_text,
    check_endpoint,
    classify,
    require_openai,
)
from alignpro.run.secrets import declare_key_env

if TYPE_CHECKING:
    from alignpro.models.sampling import Sampling

log = logging.getLogger("alignpro.models.api")

NO_KEY = "EMPTY"  # what vLLM's docs send to a server started without --api-key


@dataclass
class RequestStats:
    """Counters over a client's lifetime (all calls of :meth:`ChatClient.complete`)."""

    requests: int = 0  # HTTP attempts sent
    completed: int = 0  # answers returned
    retries: int = 0  # attempts repeated after a retryable failure
    failures: int = 0  # failed attempts, retryable or not; each one is logged with its reason
    gave_up: int = 0  # requests that failed for good (the call raised ChatAPIError)
    empty: int = 0  # answers that were an empty string (returned, and logged)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ChatClient:
    """Chat completions from an OpenAI-compatible server (vLLM, TGI, ``transformers serve``, a hosted API)."""

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"  # the *name* of the variable holding the key; None: no key needed
    max_concurrency: int = 8  # requests in flight at once
    timeout_s: float = 60.0  # per attempt
    max_retries: int = 3  # extra attempts per request after a retryable failure
    backoff_s: float = 1.0  # first retry delay; doubles per retry
    max_backoff_s: float = 30.0
    extra_sampling: str = "top_k"  # how top_k travels: top_k | generation_config | none (module docstring)
    stats: RequestStats = field(default_factory=RequestStats, repr=False, compare=False)

    def __post_init__(self) -> None:
        """The endpoint's rules (alignpro/config/endpoint.py), which the validator has checked on the config too."""
        endpoint_rules(self)
        declare_key_env(self.api_key_env)  # its value is redacted from everything written (alignpro/run/secrets.py)
        self._lock = threading.Lock()
        self._warned_top_k = False

    @classmethod
    def from_config(cls, cfg) -> ChatClient:
        """From a config node with the keys of ``conf/frozen/openai_api.yaml`` (``judge/openai_api.yaml`` too)."""
        return cls(base_url=cfg.base_url, model=cfg.model, api_key_env=cfg.api_key_env,
                   max_concurrency=cfg.max_concurrency, timeout_s=cfg.timeout_s,
                   max_retries=cfg.max_retries, backoff_s=cfg.backoff_s,
                   extra_sampling=cfg.extra_sampling)

    @property
    def name(self) -> str:
        return f"{self.base_url} model={self.model}"

    # -- secrets -----------------------------------------------------------------------------------------------

    def api_key(self) -> str:
        """The key, read now from the environment (call early to fail fast; never store the result)."""
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise EndpointError(
                f"environment variable {self.api_key_env} is not set; it must hold the API key for {self.name}: "
                f"export {self.api_key_env}=<your key>, point api_key_env at another variable, or set "
                "api_key_env=null for a server that needs no key"
            )
        return key

    def scrub(self, text: str) -> str:
        """``text`` with the key (if it is set) replaced by ``<redacted>``."""
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return text.replace(key, "<redacted>") if key else text

    # -- the request -------------------------------------------------------------------------------------------

    def request_fields(self, sampling: Sampling) -> dict[str, Any]:
        """The request's sampling fields (``extra_body`` is merged into the JSON body by the SDK)."""
        fields: dict[str, Any] = {"max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature}
        if sampling.temperature > 0:  # top_p means nothing to a greedy decoder; some servers reject it with t=0
            fields["top_p"] = sampling.top_p
        if self.extra_sampling == "top_k":
            if sampling.top_k > 0 and sampling.temperature > 0:
                fields["extra_body"] = {"top_k": sampling.top_k}
        elif self.extra_sampling == "generation_config":
            # transformers serve builds a fresh GenerationConfig from this JSON (its defaults, e.g. top_k=50,
            # apply to whatever is left out), then applies temperature/top_p/max_tokens on top: spell it all out.
            gen = {"do_sample": sampling.temperature > 0, "max_new_tokens": sampling.max_new_tokens}
            if sampling.temperature > 0:
                gen.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
            fields["extra_body"] = {"generation_config": json.dumps(gen)}
        elif sampling.top_k > 0 and sampling.temperature > 0 and not self._warned_top_k:
            self._warned_top_k = True
            log.warning("%s: top_k=%d is not sent (extra_sampling=none: the server takes OpenAI fields only); "
                        "answers are sampled with temperature/top_p alone", self.name, sampling.top_k)
        return fields

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    async def _one(self, client, sem: asyncio.Semaphore, index: int, total: int, messages: list[dict],
                   fields: dict) -> str:
        import openai

        last: Failure | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s) * (1 + 0.1 * random.random())
                delay = max(delay, min(last.retry_after or 0.0, self.max_backoff_s))
                self._count(retries=1)
                await asyncio.sleep(delay)
            async with sem:
                self._count(requests=1)
                try:
                    text = answer_text(await client.chat.completions.create(model=self.model, messages=messages,
                                                                          **fields))
                except openai.OpenAIError as err:
                    last = classify(err, self.timeout_s)
                except Failure as err:
                    last = err
                else:
                    self._count(completed=1, empty=int(text == ""))
                    if text == "":
                        log.warning("%s: request %d/%d returned an empty answer (kept: it is the model's answer)",
                                    self.name, index + 1, total)
                    return text
            self._count(failures=1)
            final = not last.retryable or attempt == self.max_retries
            log.warning("%s: request %d/%d, attempt %d/%d failed: %s%s", self.name, index + 1, total, attempt + 1,
                        self.max_retries + 1, self.scrub(last.reason), "" if final else "; retrying")
            if final:
                break
        self._count(gave_up=1)
        tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
        raise ChatAPIError(self.scrub(f"{self.name}: request {index + 1}/{total} failed after {tries}: "
                                       f"{last.reason}"))

    async def _complete(self, conversations: list[list[dict]], fields: dict, key: str, desc: str | None,
                        on_answer: Callable[[int, str], None] | None, each: bool = False) -> list:
        import openai

        sem = asyncio.Semaphore(self.max_concurrency)
        bar = tqdm(total=len(conversations), desc=desc, disable=desc is None, leave=False)

        async def run(i: int, conv: list[dict]) -> str:
            text = await self._one(client, sem, i, len(conversations), conv, fields)
            if on_answer is not None:
                on_answer(i, text)
            bar.update(1)
            return text

        async with openai.AsyncOpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout_s,
                                      max_retries=0) as client:
            tasks = [asyncio.ensure_future(run(i, c)) for i, c in enumerate(conversations)]
            if each:  # every request stands alone: a failed one is its ChatAPIError, in its place
                out = await asyncio.gather(*tasks, return_exceptions=True)
                bar.close()
                for x in out:
                    if isinstance(x, BaseException) and not isinstance(x, ChatAPIError):
                        raise x
                return list(out)
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for t in tasks:  # one request failed for good: the call fails, the rest is abandoned
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                bar.close()

    def complete(self, conversations: list[list[dict]], sampling: Sampling, desc: str | None = None,
                 on_answer: Callable[[int, str], None] | None = None, each: bool = False) -> list:
        """One answer per conversation (``[{"role": ..., "content": ...}, ...]``), in input order.

        Raises :class:`ChatAPIError` when a request fails for good; ``desc`` shows a progress bar. ``on_answer(i,
        text)`` is called as each answer arrives, so a caller can keep (cache) the answers it paid for even when a
        later request fails the call. ``each=True``: no request fails the call; a request that fails for good is
        its :class:`ChatAPIError` in its place in the list (a proxy answering independent clients).
        """
        if not conversations:
            return []
        require_openai()
        key = self.api_key()
        coro = self._complete(conversations, self.request_fields(sampling), key, desc, on_answer, each)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop: ours runs below, outside this block, so a failure is not chained to "no running loop"
        else:  # called from inside an event loop (a notebook): ours runs on a worker thread, not nested
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, coro).result()
        return asyncio.run(coro)

    # -- preflight ---------------------------------------------------------------------------------------------

    def preflight(self, group: str) -> None:
        """One cheap request before anything loads (:func:`alignpro.models.api_failures.check_endpoint`): a server
        that is down, a model it does not serve or a key it refuses is one line now. ``group`` (``frozen`` or
        ``judge``) names the keys to fix."""
        check_endpoint(self, group)

