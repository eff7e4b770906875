"""``python -m alignpro.serve``: a run's trained prompter as an OpenAI-compatible proxy, started as a user starts it
(tests/server.py alignpro_serve) and called with the real ``openai`` client, in front of a real ``transformers serve``
and of the run's own frozen model."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from alignpro.models.sampling import Sampling
from alignpro.serve import RequestError, parse_request
from tests.server import alignpro_serve, free_port
from tests.test_rewrite import job

COUNTRIES = ["France", "Japan", "Italy", "Germany", "Spain", "Egypt", "Canada", "Peru", "Kenya", "Norway", "India",
             "Chile", "Greece", "Poland", "Cuba", "Nepal"]
KEY = "sk-proxy-test-7d3a91c0e5b24f68"  # a fake key: it must never show in the proxy's output or responses
DEFAULT = Sampling(32, temperature=1.5, top_p=0.6, top_k=20)


def client(server):
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)


def ask_all(server, prompts: list[str], **kw) -> list:
    """One request per prompt, all in flight at once (16 threads), as concurrent users send them."""
    api = client(server)
    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(lambda x: api.chat.completions.create(
            model=server.model, messages=[{"role": "user", "content": x}], **kw), prompts))


# -- parsing a request -------------------------------------------------------------------------------------------------

def test_the_last_user_turn_is_x_and_the_request_sets_the_frozen_models_sampling():
    body = {"messages": [{"role": "developer", "content": "Be kind."}, {"role": "user", "content": "first"},
                         {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": [{"type": "text", "text": "How do "}, {"type": "text",
                                                                                           "text": "tides work?"}]}],
            "temperature": 0, "max_tokens": 12, "model": "anything"}
    ask = parse_request(body, DEFAULT)
    assert ask.turn == 3 and ask.prompt == "How do tides work?"
    assert [m["role"] for m in ask.messages] == ["system", "user", "assistant", "user"]
    assert ask.sampling == Sampling(12, temperature=0.0, top_p=0.6, top_k=20)
    assert parse_request({"messages": [{"role": "user", "content": "x"}]}, DEFAULT).sampling == DEFAULT


@pytest.mark.parametrize(("body", "says"), [
    ({"messages": []}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "system", "content": "s"}]}, "no user turn to rewrite"),
    ({"messages": [{"role": "tool", "content": "s"}]}, "messages[0].role='tool' is not supported; valid: system"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content must be a string"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream=true is not supported"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n=2 is not supported"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature=3 is invalid: it must be a "
                                                                         "number in [0, 2]"),
    ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p=0 is invalid"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens=0 is invalid"),
    (["not", "an", "object"], "the body must be a JSON object"),
])
def test_a_request_the_proxy_cannot_take_is_refused_with_what_is_wrong(body, says):
    with pytest.raises(RequestError) as err:
        parse_request(body, DEFAULT)
    assert says in str(err.value)


def appending(run: Path, tmp: Path) -> Path:
    """A copy of a run whose prompter appends its output to x (``prompter.rewrite: append``, as
    meta_prompt=instruction sets it), so every x' holds its own x and differs from the others."""
    copy = shutil.copytree(run, tmp / "appending")
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["prompter"]["rewrite"] = "append"
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    return copy


# -- the real proxy ----------------------------------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.timeout(600)  # transformers serve answers one request at a time: 16 through the proxy, 16 directly
def test_sixteen_concurrent_clients_in_front_of_transformers_serve_get_each_its_own_answer(arms_sweep, smollm2_server,
                                                                                          tmp_path):
    import openai

    run = appending(job(arms_sweep, "alignpro"), tmp_path)
    prompts = [f"What is the capital of {c}?" for c in COUNTRIES]
    with alignpro_serve(run, tmp_path, "--frozen.base_url", smollm2_server.base_url, "--frozen.model",
                        smollm2_server.model, "--frozen.api_key_env", "PROXY_TEST_KEY", "--frozen.extra_sampling",
                        "generation_config", "--frozen.timeout_s", "500", "--batch-wait-ms", "200",
                        env={"PROXY_TEST_KEY": KEY}) as proxy:
        assert [m.id for m in client(proxy).models.list()] == [proxy.model]
        out = ask_all(proxy, prompts, temperature=0, max_tokens=8)
    log = proxy.log_path.read_text()
    assert len(out) == 16 and all(r.choices[0].message.content for r in out), log[-2000:]
    extra = [r.model_extra["alignpro"] for r in out]
    assert [e["prompt"] for e in extra] == prompts  # each response is its own request's
    assert max(e["batch"] for e in extra) > 1  # requests that arrived together were rewritten together
    # the rewrite each response names is the x' its answer came from: the frozen server, asked x' directly with the
    # same greedy settings, answers the same text
    frozen = openai.OpenAI(base_url=smollm2_server.base_url, api_key="unused", max_retries=0)
    for r, e in zip(out, extra, strict=True):
        direct = frozen.chat.completions.create(model=smollm2_server.model, temperature=0, max_tokens=8,
                                                messages=[{"role": "user", "content": e["rewrite"]}])
        assert r.choices[0].message.content == direct.choices[0].message.content.strip(), e
    # x' = x + the prompter's output, as the run's config says; each x' differs, so a mix-up would show above
    assert all(e["rewrite"].startswith(x + " ") for e, x in zip(extra, prompts, strict=True))
    assert KEY not in log and all(KEY not in r.model_dump_json() for r in out)


@pytest.mark.integration
def test_the_runs_own_frozen_model_answers_batches_in_process(arms_sweep, tmp_path):
    run = job(arms_sweep, "alignpro")
    prompts = [f"Tell me about {c}." for c in COUNTRIES]
    with alignpro_serve(run, tmp_path, "--batch-wait-ms", "300") as proxy:
        out = ask_all(proxy, prompts, max_tokens=8)
        health = json.loads(urllib.request.urlopen(proxy.base_url.removesuffix("/v1") + "/health").read())
    extra = [r.model_extra["alignpro"] for r in out]
    assert [e["prompt"] for e in extra] == prompts and all(isinstance(r.choices[0].message.content, str) for r in out)
    assert sum(e["batch"] for e in extra) > 16  # at least one batch held several requests
    assert health["frozen"].endswith("(in-process)")
    # a sampled rewrite starts from the prompt in append mode; in full mode it is the prompter's text: either way
    # the response pairs it with its own prompt, checked above
    assert "batch of" in proxy.log_path.read_text()


@pytest.mark.integration
def test_bad_requests_get_a_400_and_a_frozen_endpoint_that_is_down_a_502_naming_it(arms_sweep, tmp_path):
    import openai

    down = f"http://127.0.0.1:{free_port()}/v1"
    with alignpro_serve(job(arms_sweep, "alignpro"), tmp_path, "--frozen.base_url", down, "--frozen.model", "m",
                        "--frozen.api_key_env", "none", "--no-preflight", "--frozen.retries", "0") as proxy:
        api = client(proxy)
        with pytest.raises(openai.BadRequestError) as err:
            api.chat.completions.create(model=proxy.model, messages=[{"role": "system", "content": "s"}])
        assert err.value.status_code == 400 and "no user turn to rewrite" in err.value.message
        with pytest.raises(openai.BadRequestError, match="temperature=5 is invalid"):
            api.chat.completions.create(model=proxy.model, messages=[{"role": "user", "content": "x"}],
                                        temperature=5)
        raw = urllib.request.Request(proxy.base_url + "/chat/completions", data=b"{not json", method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(raw)
        assert http.value.code == 400 and json.loads(http.value.read())["error"]["message"] == \
            "the body is not valid JSON"
        with pytest.raises(openai.APIStatusError) as err:
            api.chat.completions.create(model=proxy.model, messages=[{"role": "user", "content": "Hi"}])
        assert err.value.status_code == 502
        assert f"the frozen model did not answer: {down} model=m: " in err.value.message
        # the proxy is still up after a failed request
        assert urllib.request.urlopen(proxy.base_url.removesuffix("/v1") + "/health").status == 200
