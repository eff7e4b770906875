"""Real HTTP servers for the tests of alignpro.models.api, the API frozen model and the judge (no mocked clients).

* :func:`transformers_serve` starts ``transformers serve`` (an OpenAI-compatible FastAPI/uvicorn server) as a
  subprocess on a free localhost port, pinned to a local model folder (the SmolLM2 export), on CPU with one
  thread, offline; it is ready when ``GET /v1/models`` answers 200. The conftest fixture ``smollm2_server`` starts
  one per test session.
* :class:`ScriptedServer` is a stdlib ``http.server`` in a thread that speaks the chat-completions wire format with
  answers a test scripts (503s, 429s, slow replies, garbage verdicts, position-dependent verdicts): deterministic
  failure modes that a real model server cannot be made to produce on demand.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SERVE_PACKAGES = ("openai", "fastapi", "uvicorn")  # what transformers[serving] adds and `serve` imports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServedModel:
    base_url: str  # e.g. http://127.0.0.1:41234/v1
    model: str  # the name requests must use: the server is pinned to this model
    startup_s: float
    log_path: Path
    process: subprocess.Popen | None = None  # for a test that kills the server itself


def missing_serve_packages() -> list[str]:
    return [p for p in SERVE_PACKAGES if importlib.util.find_spec(p) is None]


@contextmanager
def transformers_serve(model_dir: Path, workdir: Path, ready_timeout_s: float = 180,
                       port: int | None = None) -> Iterator[ServedModel]:
    """``transformers serve <model_dir>`` on ``port`` (default: a free one); stopped (SIGTERM, then SIGKILL) when the
    block exits. A given port serves a server started again at the same URL (a config names the URL)."""
    port = port or free_port()
    hub_cache = workdir / "hf-hub"  # `GET /v1/models` scans the hub cache and answers 500 if the folder is missing
    hub_cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache), "HF_HUB_DISABLE_UPDATE_CHECK": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir), "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--dtype", "float32", "--log-level", "warning"]
    log_path = workdir / "transformers-serve.log"
    base_url = f"http://127.0.0.1:{port}/v1"
    t0 = time.perf_counter()
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"transformers serve exited with {proc.returncode} before it was ready:\n"
                                       + log_path.read_text()[-3000:])
                try:
                    with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.perf_counter() - t0 > ready_timeout_s:
                    raise RuntimeError(f"transformers serve was not ready after {ready_timeout_s:.0f}s:\n"
                                       + log_path.read_text()[-3000:])
                time.sleep(0.2)
            yield ServedModel(base_url, str(model_dir), time.perf_counter() - t0, log_path, proc)
        finally:
            proc.terminate()  # uvicorn lets in-flight generations finish (a timed-out test's leftovers): not long
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def alignpro_serve(run_dir: Path, workdir: Path, *args: str, env: dict | None = None,
                   ready_timeout_s: float = 180) -> Iterator[ServedModel]:
    """``python -m alignpro.serve <run_dir> <args>`` on a free localhost port, as a user starts it; ready when
    ``GET /health`` answers 200; stopped when the block exits. Its output (logs included) is in ``log_path``."""
    port = free_port()
    root = Path(__file__).resolve().parents[1]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
                "PYTHONPATH": str(root), **(env or {})}
    cmd = [sys.executable, "-m", "alignpro.serve", str(run_dir), "--port", str(port), *args]
    log_path = workdir / f"alignpro-serve-{port}.log"
    t0 = time.perf_counter()
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"alignpro.serve exited with {proc.returncode} before it was ready:\n"
                                       + log_path.read_text()[-3000:])
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                        if r.status == 200:
                            name = json.loads(r.read())["model"]
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.perf_counter() - t0 > ready_timeout_s:
                    raise RuntimeError(f"alignpro.serve was not ready after {ready_timeout_s:.0f}s:\n"
                                       + log_path.read_text()[-3000:])
                time.sleep(0.2)
            yield ServedModel(f"http://127.0.0.1:{port}/v1", name, time.perf_counter() - t0, log_path, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def chat_completion(text: str | None, model: str = "scripted", finish_reason: str = "stop") -> dict:
    """A minimal, valid ``chat.completion`` response body."""
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": text}}]}


# reply(body, headers) -> (status, JSON-able payload) or (status, payload, extra response headers)
Reply = Callable[[dict, dict], tuple]


class ScriptedServer:
    """A real HTTP server on a free localhost port whose chat answers come from ``reply``; records every request."""

    def __init__(self, reply: Reply, port: int = 0, models: list[str] | None = None):
        self.reply = reply
        self.models = models  # what GET /v1/models lists; None: no such route (404), as on some servers
        self.port = port  # 0: a free one; a given port lets a test start "the same server" again at the same URL
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        return len(self.bodies)

    def __enter__(self) -> ScriptedServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer._lock:
                    outer.bodies.append(body)
                    outer.headers.append(headers)
                status, payload, *extra = outer.reply(body, headers)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra[0] if extra else {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                listed = self.path.rstrip("/").endswith("/models") and outer.models is not None
                data = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in outer.models]}
                                  if listed else {"error": {"message": f"no route {self.path}"}}).encode()
                self.send_response(200 if listed else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output clean
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client that timed out closed its socket
                pass

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket: new connections are refused, as by a server that died.
        Safe to call from a request handler (the serving loop runs in its own thread) and more than once."""
        self._server.shutdown()
        self._server.server_close()

    def __exit__(self, *exc) -> None:
        self.stop()
