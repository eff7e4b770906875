import pytest

from alignpro.models.chat import chat
from alignpro.models.frozen import HFResponder, build_frozen
from alignpro.models.generation import generate_chat
from alignpro.models.sampling import Sampling


def test_frozen_sees_only_the_prompt_in_its_user_turn(tiny_lm, monkeypatch):
    model, tok = tiny_lm
    seen = {}

    def record(model_, tok_, convs, sampling, batch_size, desc=None, engine=None, cuts=None):
        seen["convs"], seen["engine"] = convs, engine
        return ["y"] * len(convs)

    monkeypatch.setattr("alignpro.models.frozen.generate_chat", record)
    HFResponder(model, tok, Sampling(4)).answer(["x-prime one", "x-prime two"])
    assert seen["engine"].engine == "hf"  # the default engine is the generate() path
    assert seen["convs"] == [[{"role": "user", "content": "x-prime one"}], [{"role": "user", "content": "x-prime two"}]]


def test_frozen_model_has_no_trainable_parameters_and_answers_each_prompt(lively_lm):
    model, tok = lively_lm
    greedy = Sampling(5, temperature=0)
    f = HFResponder(model, tok, greedy, system="Be kind.", batch_size=2)
    assert not any(p.requires_grad for p in model.parameters())
    prompts = ["a", "What is a river?", "c"]
    out = f.answer(prompts)
    # each answer is the model's own greedy answer to [system] + that prompt, in order, across batches of 2
    assert out == [generate_chat(model, tok, [chat(p, "Be kind.")], greedy)[0] for p in prompts]
    assert len(set(out)) == 3


def test_sampling_override_at_call_time(lively_lm):
    model, tok = lively_lm
    f = HFResponder(model, tok, Sampling(2, temperature=0))
    assert f.answer(["a"]) == f.answer(["a"])  # greedy by default
    longer = f.answer(["a"], Sampling(8, temperature=0))[0]
    assert longer != f.answer(["a"])[0] and len(tok(longer)["input_ids"]) > 2  # the override's length was used


def test_build_frozen_from_config_and_unknown_backend():
    from alignpro.config.validate import ConfigError, validate
    from tests.conftest import compose

    cfg = compose("frozen=tiny").frozen
    f = build_frozen(cfg)
    s = cfg.sampling
    assert f.sampling == Sampling(cfg.max_new_tokens, s.temperature, s.top_p, s.top_k)
    with pytest.raises(ConfigError, match="frozen.backend='grpc' is invalid: valid: hf, openai_api"):
        validate(compose("experiment=smoke", "frozen.backend=grpc"))


# ---- frozen=openai_api: APIResponder through alignpro.models.api.ChatClient, against real servers
# ----------------------

def api_frozen_cfg(*overrides: str):
    from tests.conftest import compose

    return compose("frozen=openai_api", *overrides).frozen


@pytest.mark.integration
def test_api_frozen_answers_through_a_real_transformers_server(smollm2_server):
    from alignpro.models.frozen import APIResponder

    cfg = api_frozen_cfg(f"frozen.base_url={smollm2_server.base_url}", f"frozen.model={smollm2_server.model}",
                         "frozen.api_key_env=null", "frozen.extra_sampling=generation_config",
                         "frozen.max_new_tokens=12", "frozen.max_concurrency=2")
    frozen = build_frozen(cfg)
    assert isinstance(frozen, APIResponder) and frozen.sampling == Sampling(12, 1.0, 1.0, 0)
    out = frozen.answer(["What is the capital of France?", "Name a colour.", "Say hello."], desc="frozen")
    assert len(out) == 3 and all(isinstance(a, str) and a == a.strip() and a for a in out)
    assert frozen.client.stats.completed == 3 and frozen.client.stats.failures == 0


def test_api_frozen_sends_the_system_turn_then_only_the_prompt():
    from alignpro.models.api import ChatClient
    from alignpro.models.frozen import APIResponder
    from tests.server import ScriptedServer, chat_completion

    with ScriptedServer(lambda body, headers: (200, chat_completion("  y  "))) as srv:
        frozen = APIResponder(ChatClient(srv.base_url, "m", api_key_env=None), Sampling(4), system="Be brief.")
        assert frozen.answer(["x-prime"]) == ["y"]  # stripped, as generate_chat strips
        frozen.answer(["x2"], Sampling(9, 1.5, 0.6, 20))
    assert srv.bodies[0]["messages"] == [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "x-prime"}]
    assert (srv.bodies[0]["max_tokens"], srv.bodies[1]["max_tokens"]) == (4, 9)  # call-time sampling wins
    assert srv.bodies[1]["temperature"] == 1.5 and srv.bodies[1]["top_k"] == 20


def test_build_api_frozen_checks_the_key_variable_and_refuses_other_weights(monkeypatch):
    from alignpro.models.api_failures import EndpointError

    monkeypatch.delenv("ALIGNPRO_FROZEN_KEY", raising=False)
    cfg = api_frozen_cfg("frozen.api_key_env=ALIGNPRO_FROZEN_KEY")
    with pytest.raises(EndpointError, match="ALIGNPRO_FROZEN_KEY is not set"):
        build_frozen(cfg)  # fails when built, before any training step needs an answer
    monkeypatch.setenv("ALIGNPRO_FROZEN_KEY", "k" * 20)
    assert build_frozen(cfg).client.model == cfg.model
    with pytest.raises(ValueError, match="cannot load other weights"):
        build_frozen(cfg, path="/some/oracle")


def test_api_frozen_validates_without_local_weights(monkeypatch):
    from alignpro.config import validate as config
    from tests.conftest import compose

    roles = []
    monkeypatch.setattr(config, "check_available", lambda source, role: roles.append(role))
    config.validate(compose("frozen=openai_api"))
    assert "frozen" not in roles and "reward" in roles  # nothing local to check for a model behind an API


def test_rlhf_oracle_cannot_train_a_model_behind_an_api():
    from alignpro.config.validate import ConfigError, validate
    from tests.conftest import compose

    with pytest.raises(ConfigError, match="method=rlhf.*cannot be trained"):
        validate(compose("frozen=openai_api", "method=rlhf"))


@pytest.mark.parametrize(("override", "match"), [
    ("frozen.base_url=localhost:8000", "frozen.base_url"),
    ("frozen.model=''", "frozen.model"),
    ("frozen.max_concurrency=0", "frozen.max_concurrency"),
    ("frozen.timeout_s=0", "frozen.timeout_s"),
    ("frozen.max_retries=-1", "frozen.max_retries"),
    ("frozen.backoff_s=-1", "frozen.backoff_s"),
    ("frozen.extra_sampling=vllm", "frozen.extra_sampling"),
    ("frozen.api_key_env=sk-live-0123456789abcdef", "frozen.api_key_env must be the NAME"),
    ("+frozen.api_key=sk-live-0123456789abcdef", "frozen.api_key holds a secret"),
    ("frozen.backend=grpc", "frozen.backend"),
])
def test_api_frozen_bad_values_fail_validation_before_anything_loads(override, match):
    from alignpro.config.validate import ConfigError, validate
    from tests.conftest import compose_raw

    with pytest.raises(ConfigError, match=match) as err:  # what Hydra composed, as alignpro.train gets it
        validate(compose_raw("frozen=openai_api", override))
    assert "0123456789abcdef" not in str(err.value)  # a key pasted in the wrong place is not echoed
