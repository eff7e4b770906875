"""alignpro.models.api.ChatClient against real servers: ``transformers serve`` on SmolLM2 (session fixture) for the
happy
path, timeouts and a pinned model; a scripted stdlib HTTP server for 5xx/429 sequences, echoed keys and odd bodies."""

import json
import logging
import time

import pytest

from alignpro.models.api import ChatClient
from alignpro.models.api_failures import ChatAPIError, EndpointError
from alignpro.models.sampling import Sampling
from tests.server import ScriptedServer, chat_completion, free_port

GREEDY = Sampling(24, temperature=0.0)
KEY = "sk-test-4f9c2e1b7a6d5c3e"  # a fake key: what matters is that it never shows up where it must not


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def served(server, **kw) -> ChatClient:
    kw = {"api_key_env": None, "extra_sampling": "generation_config", "backoff_s": 0.01, **kw}
    return ChatClient(server.base_url, kw.pop("model", server.model), **kw)


@pytest.mark.integration
def test_real_server_answers_every_prompt_in_order_under_concurrency(smollm2_server):
    client = served(smollm2_server, max_concurrency=3)
    capitals = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Germany": "Berlin"}
    t0 = time.perf_counter()
    out = client.complete([user(f"What is the capital of {c}?") for c in capitals], GREEDY, desc="test")
    assert len(out) == 4 and all(isinstance(a, str) and a.strip() for a in out)
    for answer, (country, city) in zip(out, capitals.items(), strict=True):  # order kept though requests overlap
        assert country in answer or city in answer, (answer, country)
    assert client.stats.as_dict() == {"requests": 4, "completed": 4, "retries": 0, "failures": 0, "gave_up": 0,
                                      "empty": 0}
    assert time.perf_counter() - t0 < 60


@pytest.mark.integration
def test_real_server_samples_with_top_k_through_generation_config(smollm2_server):
    client = served(smollm2_server, max_concurrency=2)
    # transformers serve decodes greedily unless told do_sample: distinct samples prove the sampling fields arrive
    out = client.complete([user("Write one word.")] * 3, Sampling(8, temperature=1.5, top_p=0.95, top_k=50))
    assert len(out) == 3 and len(set(out)) > 1


@pytest.mark.integration
def test_wrong_model_fails_fast_with_a_clear_error(smollm2_server):
    client = served(smollm2_server, model="no-such-model", max_retries=3)
    with pytest.raises(ChatAPIError, match=r"127\.0\.0\.1.*model=no-such-model.*failed after 1 attempt: HTTP 400"):
        client.complete([user("hi")], GREEDY)
    assert (client.stats.requests, client.stats.retries, client.stats.failures, client.stats.gave_up) == (1, 0, 1, 1)


@pytest.mark.integration
def test_bare_top_k_is_rejected_by_transformers_serve_with_a_hint(smollm2_server):
    client = served(smollm2_server, extra_sampling="top_k", max_retries=2)
    with pytest.raises(ChatAPIError, match="HTTP 422.*extra_sampling=generation_config"):
        client.complete([user("hi")], Sampling(4, 1.0, 1.0, 20))
    assert client.stats.requests == 1  # a 4xx is not retried


@pytest.mark.integration
def test_timeouts_are_retried_counted_then_raised(smollm2_server, caplog):
    client = served(smollm2_server, timeout_s=0.02, max_retries=2)
    with caplog.at_level(logging.WARNING, logger="alignpro.models.api"), pytest.raises(ChatAPIError, match="timed out"):
        client.complete([user("Tell me a long story about a dragon.")], Sampling(16, temperature=0.0))
    s = client.stats
    assert (s.requests, s.retries, s.failures, s.gave_up, s.completed) == (3, 2, 3, 1, 0)
    assert sum("timed out" in r.getMessage() for r in caplog.records) == 3  # every failure logged


def test_server_down_retries_with_backoff_then_names_server_model_and_reason(caplog):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    client = ChatClient(url, "m", api_key_env=None, max_retries=3, backoff_s=0.05)
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="alignpro.models.api"), pytest.raises(ChatAPIError) as err:
        client.complete([user("hi")], GREEDY)
    assert time.perf_counter() - t0 >= 0.05 + 0.1 + 0.2  # 0.05 · (1 + 2 + 4): exponential backoff
    msg = str(err.value)
    assert url in msg and "model=m" in msg and "connection error" in msg and "4 attempts" in msg
    assert (client.stats.requests, client.stats.retries, client.stats.failures) == (4, 3, 4)
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 4


def test_5xx_and_429_are_retried_until_a_valid_answer():
    script = [(503, {"error": {"message": "overloaded"}}), (429, {"error": {"message": "slow down"}},
              {"Retry-After": "0.2"}), (200, chat_completion("fine"))]
    with ScriptedServer(lambda body, headers: script.pop(0)) as srv:
        client = ChatClient(srv.base_url, "m", api_key_env=None, max_retries=3, backoff_s=0.01)
        t0 = time.perf_counter()
        assert client.complete([user("hi")], GREEDY) == ["fine"]
        assert time.perf_counter() - t0 >= 0.2  # the server's Retry-After beats our shorter backoff
    assert srv.requests == 3
    s = client.stats
    assert (s.requests, s.retries, s.failures, s.completed, s.gave_up) == (3, 2, 2, 1, 0)


def test_persistent_5xx_gives_up_after_max_retries():
    with ScriptedServer(lambda body, headers: (502, {"error": "bad gateway"})) as srv:
        client = ChatClient(srv.base_url, "m", api_key_env=None, max_retries=2, backoff_s=0.01)
        with pytest.raises(ChatAPIError, match="failed after 3 attempts: HTTP 502"):
            client.complete([user("a"), user("b")], GREEDY)
    assert client.stats.gave_up >= 1 and client.stats.completed == 0


def test_each_request_can_stand_alone_a_failed_one_is_its_error_in_its_place():
    def reply(body, headers):  # the request about "b" always fails; the others are answered with their own text
        text = body["messages"][-1]["content"]
        return (500, {"error": {"message": "boom"}}) if text == "b" else (200, chat_completion(f"re: {text}"))

    with ScriptedServer(reply) as srv:
        client = ChatClient(srv.base_url, "m", api_key_env=None, max_retries=1, backoff_s=0.01)
        out = client.complete([user("a"), user("b"), user("c")], GREEDY, each=True)
        assert out[0] == "re: a" and out[2] == "re: c"
        assert isinstance(out[1], ChatAPIError) and "request 2/3 failed after 2 attempts: HTTP 500" in str(out[1])
        with pytest.raises(ChatAPIError):  # without each, the same call fails as a whole
            client.complete([user("a"), user("b")], GREEDY)


def test_missing_content_is_a_failure_never_an_empty_answer():
    with ScriptedServer(lambda body, headers: (200, chat_completion(None, finish_reason="content_filter"))) as srv:
        client = ChatClient(srv.base_url, "m", api_key_env=None, max_retries=1, backoff_s=0.01)
        with pytest.raises(ChatAPIError, match="no message content.*content_filter"):
            client.complete([user("hi")], GREEDY)
    assert srv.requests == 2 and client.stats.failures == 2


@pytest.mark.parametrize(("payload", "reason"), [
    ("<html>502 from a proxy</html>", "malformed response"),
    ({"object": "chat.completion", "choices": []}, "malformed response"),
])
def test_malformed_bodies_are_counted_failures(payload, reason):
    with ScriptedServer(lambda body, headers: (200, payload)) as srv:
        client = ChatClient(srv.base_url, "m", api_key_env=None, max_retries=1, backoff_s=0.01)
        with pytest.raises(ChatAPIError, match=reason):
            client.complete([user("hi")], GREEDY)
    assert (client.stats.requests, client.stats.failures, client.stats.gave_up) == (2, 2, 1)


def test_an_empty_answer_is_returned_but_counted_and_logged(caplog):
    with ScriptedServer(lambda body, headers: (200, chat_completion(""))) as srv:
        client = ChatClient(srv.base_url, "m", api_key_env=None)
        with caplog.at_level(logging.WARNING, logger="alignpro.models.api"):
            assert client.complete([user("hi")], GREEDY) == [""]
    assert client.stats.empty == 1 and "empty answer" in caplog.text


def test_key_comes_from_the_named_env_var_and_never_leaks(monkeypatch, caplog):
    monkeypatch.setenv("ALIGNPRO_TEST_KEY", KEY)

    def echo_key(body, headers):  # a badly behaved server that echoes the credentials it got
        return 401, {"error": {"message": f"invalid key {headers['authorization']}"}}

    with ScriptedServer(echo_key) as srv:
        client = ChatClient(srv.base_url, "m", api_key_env="ALIGNPRO_TEST_KEY", max_retries=2)
        with caplog.at_level(logging.DEBUG), pytest.raises(ChatAPIError) as err:
            client.complete([user("hi")], GREEDY)
    assert srv.headers[0]["authorization"] == f"Bearer {KEY}"  # the key was sent...
    assert srv.requests == 1  # ...a 401 is not retried...
    assert "HTTP 401" in str(err.value) and "api_key_env" in str(err.value)
    for text in (str(err.value), repr(err.value), repr(client), caplog.text):  # ...and shows up nowhere
        assert KEY not in text
    assert "<redacted>" in str(err.value)


def test_missing_env_var_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("ALIGNPRO_NO_SUCH_KEY", raising=False)
    with ScriptedServer(lambda body, headers: (200, chat_completion("x"))) as srv:
        client = ChatClient(srv.base_url, "m", api_key_env="ALIGNPRO_NO_SUCH_KEY")
        with pytest.raises(EndpointError, match="ALIGNPRO_NO_SUCH_KEY is not set.*api_key_env=null"):
            client.complete([user("hi")], GREEDY)
    assert srv.requests == 0


def test_keyless_server_gets_a_dummy_key():
    with ScriptedServer(lambda body, headers: (200, chat_completion("x"))) as srv:
        ChatClient(srv.base_url, "m", api_key_env=None).complete([user("hi")], GREEDY)
    assert srv.headers[0]["authorization"] == "Bearer EMPTY"


@pytest.mark.parametrize(("mode", "extra"), [
    ("top_k", {"top_k": 20}),
    ("generation_config", {"generation_config": {"do_sample": True, "max_new_tokens": 7, "temperature": 1.5,
                                                 "top_p": 0.6, "top_k": 20}}),
    ("none", {}),
])
def test_sampling_maps_onto_the_request(mode, extra, caplog):
    with ScriptedServer(lambda body, headers: (200, chat_completion("x"))) as srv:
        client = ChatClient(srv.base_url, "m", api_key_env=None, extra_sampling=mode)
        with caplog.at_level(logging.WARNING, logger="alignpro.models.api"):
            client.complete([user("hi")], Sampling(7, 1.5, 0.6, 20))  # the paper's evaluation sampling (D8)
    body = srv.bodies[0]
    if "generation_config" in body:
        body["generation_config"] = json.loads(body["generation_config"])
    assert body == {"model": "m", "messages": user("hi"), "max_tokens": 7, "temperature": 1.5, "top_p": 0.6, **extra}
    assert ("top_k=20 is not sent" in caplog.text) == (mode == "none")  # dropped, but never silently


def test_greedy_sends_no_sampling_knobs():
    with ScriptedServer(lambda body, headers: (200, chat_completion("x"))) as srv:
        ChatClient(srv.base_url, "m", api_key_env=None, extra_sampling="top_k").complete([user("hi")], GREEDY)
    assert srv.bodies[0] == {"model": "m", "messages": user("hi"), "max_tokens": 24, "temperature": 0.0}


@pytest.mark.parametrize(("kw", "match"), [
    ({"base_url": "localhost:8000"}, "base_url"),
    ({"model": ""}, "model"),
    ({"api_key_env": KEY}, "api_key_env must be the NAME of an environment variable"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"extra_sampling": "vllm"}, "extra_sampling"),
])
def test_invalid_settings_are_refused_without_echoing_a_key(kw, match):
    args = {"base_url": "http://localhost:8000/v1", "model": "m", **kw}
    with pytest.raises(ValueError, match=match) as err:
        ChatClient(**args)
    assert KEY not in str(err.value)


def test_usable_from_inside_a_running_event_loop():
    import asyncio

    async def caller():
        with ScriptedServer(lambda body, headers: (200, chat_completion("ok"))) as srv:
            return ChatClient(srv.base_url, "m", api_key_env=None).complete([user("a"), user("b")], GREEDY)

    assert asyncio.run(caller()) == ["ok", "ok"]
