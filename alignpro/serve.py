"""A trained prompter in front of a frozen model, served as an OpenAI-compatible chat endpoint.

    python -m alignpro.serve outputs/demo/<time>/2                      # the run's own frozen model, in-process
    python -m alignpro.serve <run dir> --frozen.base_url http://localhost:8000/v1 --frozen.model <served name>

Then any OpenAI client talks to it: ``OpenAI(base_url="http://127.0.0.1:8100/v1", api_key="unused")``.

``POST /v1/chat/completions``: the conversation's last user turn x is rewritten to x′ by the run's trained prompter,
with the run's own rewrite settings (alignpro/models/trained.py); the conversation with x′ in its place goes to the
frozen model, and its answer comes back as the assistant message. The response also carries
``"alignpro": {"prompt": x, "rewrite": x′, ...}``, a field OpenAI clients keep and may ignore (``response.alignpro``
in the Python client). ``GET /v1/models`` lists the one served name; ``GET /health`` says it is up.

Requests that arrive together are batched: the first one waits ``--batch-wait-ms`` for others, up to
``--max-batch``, and the batch is rewritten in one pass of the prompter and answered in one batch of the local frozen
model (or ``max_concurrency`` requests at a time to a frozen endpoint). ``temperature``, ``top_p`` and ``max_tokens``
of a request set the frozen model's sampling (default: the run's evaluation sampling); requests with different
settings are answered in separate groups of the batch.

Errors use OpenAI's error body. A request this server cannot take is a 400 with one message (no user turn, a
non-text part, ``stream`` or ``n`` > 1, a bad sampling value). A frozen endpoint that fails (down, refusing, timing
out after its retries) is a 502 naming it. The endpoint's key is read from the variable ``--frozen.api_key_env``
names, and is never logged or echoed: error texts are scrubbed of it. The proxy itself asks for no key: it binds to
localhost unless told otherwise, so put it behind your gateway to expose it.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint's annotations (Request is imported inside
# create_app, where they must be evaluated).
import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignpro.models.api_failures import ChatAPIError
from alignpro.models.frozen import APIResponder
from alignpro.models.sampling import Sampling
from alignpro.models.trained import load_trained
from alignpro.run.errors import ArgumentParser, BadInput, run_cli

log = logging.getLogger("alignpro.serve")

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class RequestError(ValueError):
    """A request this server cannot take: a 400 with this message."""


@dataclass
class Ask:
    """One chat request, parsed: the conversation, which turn is x, and the frozen model's sampling."""

    messages: list[dict]
    turn: int  # index of the last user turn, the x that is rewritten
    sampling: Sampling
    future: asyncio.Future | None = None

    @property
    def prompt(self) -> str:
        return self.messages[self.turn]["content"]


def text_of(content: Any, where: str) -> str:
    """A message's content as one string: a string, or a list of text parts (OpenAI's content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise RequestError(f"{where}.content must be a string or a list of text parts ({{'type': 'text', 'text': ...}}); "
                       "this server rewrites and answers text only")


def number(body: dict, key: str, low: float, high: float, low_open: bool = False) -> float | None:
    """``body[key]`` if it is a number in its range, None if absent; else a RequestError naming it."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            (low < value if low_open else low <= value) and value <= high):
        raise RequestError(f"{key}={value!r} is invalid: it must be a number in {'(' if low_open else '['}{low:g}, "
                           f"{high:g}]")
    return float(value)


def parse_request(body: Any, default: Sampling) -> Ask:
    """A chat-completions body as an :class:`Ask`, or a :class:`RequestError` with the one thing that is wrong."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object with a 'messages' list")
    if body.get("stream"):
        raise RequestError("stream=true is not supported: the answer comes back whole; send stream=false")
    if body.get("n", 1) != 1:
        raise RequestError(f"n={body.get('n')!r} is not supported: one answer per request (n=1)")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list of {'role': ..., 'content': ...}")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            role = m.get("role") if isinstance(m, dict) else m
            raise RequestError(f"messages[{i}].role={role!r} is not supported; valid: {', '.join(ROLES)}")
        messages.append({"role": ROLES[m["role"]], "content": text_of(m.get("content"), f"messages[{i}]")})
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        raise RequestError("the conversation has no user turn to rewrite: add a message with role 'user'")
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        raise RequestError(f"max_tokens={tokens!r} is invalid: it must be an integer ≥ 1")
    temperature = number(body, "temperature", 0, 2)
    top_p = number(body, "top_p", 0, 1, low_open=True)
    sampling = Sampling(tokens or default.max_new_tokens,
                        default.temperature if temperature is None else temperature,
                        default.top_p if top_p is None else top_p, default.top_k)
    return Ask(messages, users[-1], sampling)


def error_body(message: str, status: int) -> dict:
    kind = {400: "invalid_request_error", 502: "upstream_error"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


@dataclass
class Proxy:
    """The prompter, the frozen model and the queue that batches requests for them."""

    prompter: Any  # alignpro.models.prompter.Prompter
    rewrite_sampling: Sampling
    frozen: Any  # alignpro.models.frozen.HFResponder | APIResponder: has converse()
    frozen_name: str
    system: str | None  # the frozen model's system turn in training, put before a conversation that has none
    answer_sampling: Sampling
    name: str = "alignpro"  # the model name /v1/models lists
    max_batch: int = 16
    batch_wait_s: float = 0.01
    queue: asyncio.Queue | None = field(default=None, repr=False)

    def run_batch(self, asks: list[Ask]) -> list[dict | Exception]:
        """Rewrite every x of the batch in one pass, then answer each sampling group; a group that fails gives its
        requests the error (the other groups are still answered)."""
        t0 = time.perf_counter()
        rewrites = self.prompter.rewrite([a.prompt for a in asks], self.rewrite_sampling)
        groups: dict[Sampling, list[int]] = defaultdict(list)
        for i, a in enumerate(asks):
            groups[a.sampling].append(i)
        out: list[dict | Exception] = [{} for _ in asks]
        for sampling, members in groups.items():
            convs = []
            for i in members:
                conv = [dict(m) for m in asks[i].messages]
                conv[asks[i].turn]["content"] = rewrites[i]
                if self.system and conv[0]["role"] != "system":
                    conv.insert(0, {"role": "system", "content": self.system})
                convs.append(conv)
            try:  # an endpoint answers each request alone (one timeout is one 502); a local model, the group
                answers = (self.frozen.converse(convs, sampling, each=True) if isinstance(self.frozen, APIResponder)
                           else self.frozen.converse(convs, sampling))
            except Exception as err:  # noqa: BLE001 - each request of the group gets it as its response
                answers = [err] * len(members)
            for i, answer in zip(members, answers, strict=True):
                out[i] = answer if isinstance(answer, Exception) else {"answer": answer, "rewrite": rewrites[i]}
        log.info("batch of %d: %d sampling group(s), %.2f s", len(asks), len(groups), time.perf_counter() - t0)
        return out

    async def worker(self) -> None:
        """Takes the first waiting request, gathers what else arrives within ``batch_wait_s`` (up to ``max_batch``),
        and runs the batch on a thread, so the server keeps taking requests meanwhile."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.batch_wait_s
            while len(batch) < self.max_batch:
                if not self.queue.empty():  # already waiting: taken whatever the clock says
                    batch.append(self.queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            try:
                results = await asyncio.to_thread(self.run_batch, batch)
            except Exception as err:  # noqa: BLE001 - the prompter failed: every request of the batch hears it
                results = [err] * len(batch)
            for ask, res in zip(batch, results, strict=True):
                if isinstance(res, dict):
                    res["batch"] = len(batch)
                if not ask.future.done():  # a client that hung up has its future cancelled
                    ask.future.set_result(res)

    async def complete(self, ask: Ask) -> dict | Exception:
        ask.future = asyncio.get_running_loop().create_future()
        await self.queue.put(ask)
        return await ask.future


def create_app(proxy: Proxy):
    """The ASGI app (FastAPI) around ``proxy``; its batching worker runs for the app's lifetime."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    @asynccontextmanager
    async def lifespan(app):
        proxy.queue = asyncio.Queue()
        task = asyncio.create_task(proxy.worker())
        yield
        task.cancel()

    app = FastAPI(title="alignpro prompter proxy", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": proxy.name, "frozen": proxy.frozen_name}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": proxy.name, "object": "model", "created": 0,
                                            "owned_by": "alignpro"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse(error_body("the body is not valid JSON", 400), status_code=400)
        try:
            ask = parse_request(body, proxy.answer_sampling)
        except RequestError as err:
            return JSONResponse(error_body(str(err), 400), status_code=400)
        res = await proxy.complete(ask)
        if isinstance(res, Exception):
            if isinstance(res, ChatAPIError):
                msg = f"the frozen model did not answer: {' '.join(str(res).split())}"  # the error names it
                return JSONResponse(error_body(msg, 502), status_code=502)
            log.error("request failed: %s: %s", type(res).__name__, res)
            return JSONResponse(error_body(f"{type(res).__name__}: {res}", 500), status_code=500)
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": proxy.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": res["answer"]},
                         "finish_reason": "stop"}],
            "alignpro": {"prompt": ask.prompt, "rewrite": res["rewrite"], "frozen": proxy.frozen_name,
                         "batch": res["batch"]},
        })

    return app


def build_proxy(run_dir: Path, base_url: str | None, model: str | None, api_key_env: str | None,
                max_batch: int, batch_wait_ms: float, greedy: bool, retries: int, preflight: bool,
                device: str | None = None, extra_sampling: str = "top_k", timeout_s: float = 120.0) -> Proxy:
    """The run's prompter, and the frozen model: the endpoint given, else the run's own (in-process or its API)."""
    trained = load_trained(run_dir)  # its config only: the weights load last, after the endpoint has answered
    cfg = trained.cfg
    from alignpro.methods.rl import quiet_library_noise
    from alignpro.models.api import ChatClient
    from alignpro.models.assets import pick_device
    from alignpro.models.frozen import build_frozen
    from alignpro.models.generation import GenerationEngine

    quiet_library_noise()
    answer = Sampling.from_config(cfg.eval.sampling, cfg.eval.max_new_tokens or cfg.frozen.max_new_tokens)
    if base_url is not None:
        client = ChatClient(base_url, model, api_key_env, timeout_s=timeout_s, max_retries=retries,
                            extra_sampling=extra_sampling)
        client.api_key()  # a missing key is one line now
        if preflight:
            client.preflight("frozen")
        frozen, frozen_name, system = APIResponder(client, answer), client.name, None
    else:
        frozen = build_frozen(cfg.frozen, pick_device(device or cfg.device),
                              engine=GenerationEngine.from_config(cfg.generation))
        if cfg.frozen.backend == "openai_api" and preflight:
            frozen.client.preflight("frozen")
        frozen_name = frozen.client.name if cfg.frozen.backend == "openai_api" else f"{cfg.frozen.name} (in-process)"
        system = cfg.frozen.system
    return Proxy(trained.load(device), trained.rewrite_sampling(greedy), frozen, frozen_name, system, answer,
                 name=f"alignpro/{cfg.prompter.name}->{model or cfg.frozen.name}", max_batch=max_batch,
                 batch_wait_s=batch_wait_ms / 1000)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m alignpro.serve <run dir> [--frozen.base_url URL --frozen.model NAME] [--port 8100] ...``."""
    parser = ArgumentParser(prog="python -m alignpro.serve",
                            description="Serve a run's trained prompter in front of a frozen model, OpenAI-compatible.")
    parser.add_argument("run_dir", type=Path, help="the run dir of a finished method=alignpro job, or its prompter/ "
                                                   "folder")
    parser.add_argument("--frozen.base_url", dest="base_url", default=None,
                        help="an OpenAI-compatible endpoint (e.g. http://localhost:8000/v1); default: the run's "
                             "own frozen model")
    parser.add_argument("--frozen.model", dest="model", default=None, help="the model name that endpoint serves")
    parser.add_argument("--frozen.api_key_env", dest="api_key_env", default="OPENAI_API_KEY",
                        help="NAME of the variable holding the endpoint's key (default OPENAI_API_KEY); 'none' = "
                             "the endpoint needs no key")
    parser.add_argument("--frozen.extra_sampling", dest="extra_sampling", default="top_k",
                        choices=("top_k", "generation_config", "none"),
                        help="how top_k reaches the endpoint: top_k (vLLM, SGLang, llama.cpp), generation_config "
                             "(transformers serve), none (hosted APIs)")
    parser.add_argument("--frozen.timeout_s", dest="timeout_s", type=float, default=120.0,
                        help="seconds one frozen request may take, waiting in the endpoint's queue included (120)")
    parser.add_argument("--frozen.retries", dest="retries", type=int, default=1,
                        help="extra attempts after a failed frozen request before the client gets a 502 (default 1)")
    parser.add_argument("--no-preflight", action="store_true",
                        help="start even if the frozen endpoint does not answer now (requests then get 502s)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8100, help="port (default 8100)")
    parser.add_argument("--max-batch", type=int, default=16, help="requests rewritten and answered together (16)")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0,
                        help="how long the first request of a batch waits for others (default 10 ms)")
    parser.add_argument("--greedy", action="store_true", help="argmax rewrites instead of the run's sampling")
    parser.add_argument("--device", default=None, help="cpu | cuda | auto (default: the run's device key)")
    args = parser.parse_args(argv)
    for flag, value, low in (("--max-batch", args.max_batch, 1), ("--port", args.port, 0),
                             ("--frozen.retries", args.retries, 0), ("--frozen.timeout_s", args.timeout_s, 1)):
        if value < low:
            raise BadInput(f"{flag} {value} is invalid: it must be ≥ {low}")
    if (args.base_url is None) != (args.model is None):
        raise BadInput("--frozen.base_url and --frozen.model go together: give both (an OpenAI-compatible endpoint "
                       "and the model name it serves), or neither for the run's own frozen model")
    if args.batch_wait_ms < 0:
        raise BadInput(f"--batch-wait-ms {args.batch_wait_ms:g} is invalid: it must be ≥ 0")
    key_env = None if args.api_key_env.lower() == "none" else args.api_key_env
    if args.base_url is not None and key_env is not None:
        import os

        if not os.environ.get(key_env):
            raise BadInput(f"--frozen.api_key_env {key_env}: the variable is not set; export {key_env}=<the key of "
                           f"{args.base_url}>, or pass --frozen.api_key_env none for an endpoint that needs no key")
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise BadInput(f"python -m alignpro.serve needs {err.name}: pip install 'alignpro[serve]'") from None
    proxy = build_proxy(args.run_dir, args.base_url, args.model, key_env, args.max_batch, args.batch_wait_ms,
                        args.greedy, args.retries, not args.no_preflight, args.device, args.extra_sampling,
                        args.timeout_s)
    log.info("serving %s on http://%s:%d/v1 (frozen: %s)", proxy.name, args.host, args.port, proxy.frozen_name)
    uvicorn.run(create_app(proxy), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    run_cli(main)
