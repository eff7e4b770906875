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


# ---- frozen.cpu_weights=fp16: the Linears' weights in fp16 through fbgemm, activations and sums fp32
# ----------------------

def test_fp16_weight_linear_multiplies_by_the_weight_rounded_to_fp16_in_fp32():
    import torch

    from alignpro.models.frozen import FP16WeightLinear

    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    with torch.no_grad():  # 1 + 2⁻¹² is no fp16 number: each weight rounds to ±1, so the rounding shows in the sum
        lin.weight.copy_(torch.sign(torch.randn(32, 64)) * (1 + 2**-12))
    x = torch.rand(2, 5, 64)  # [batch, tokens, features], as a decoder calls it
    packed = FP16WeightLinear(lin)(x)
    rounded = torch.nn.functional.linear(x, lin.weight.half().float(), lin.bias)
    assert packed.shape == (2, 5, 32) and packed.dtype == torch.float32
    assert torch.allclose(packed, rounded, rtol=0, atol=1e-5)
    assert (packed - lin(x)).abs().max() > 5e-4  # not the fp32 weights: those differ by x·2⁻¹² per term


def test_cpu_weights_fp16_packs_every_linear_of_the_frozen_model_and_keeps_its_embedding():
    import torch

    from alignpro.models.frozen import FP16WeightLinear
    from tests.conftest import compose

    fp32 = build_frozen(compose("frozen=tiny").frozen)
    fp16 = build_frozen(compose("frozen=tiny", "frozen.cpu_weights=fp16").frozen)
    linears = [m for m in fp32.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and not any(isinstance(m, FP16WeightLinear) for m in fp32.model.modules())
    assert not any(isinstance(m, torch.nn.Linear) for m in fp16.model.modules())
    assert sum(isinstance(m, FP16WeightLinear) for m in fp16.model.modules()) == len(linears)  # the head too
    emb = fp16.model.get_input_embeddings().weight
    assert emb.dtype == torch.float32 and torch.equal(emb, fp32.model.get_input_embeddings().weight)
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.inference_mode():
        a, b = fp32.model(ids).logits, fp16.model(ids).logits
    assert torch.allclose(a, b, atol=1e-2) and not torch.equal(a, b)  # the same model, to fp16 rounding
    assert len(fp16.answer(["a", "What is a river?"])) == 2


def test_the_oracles_trained_lora_copy_answers_merged_and_packed_like_the_other_arms(lively_lm):
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    from alignpro.models.frozen import FP16WeightLinear, answering
    from tests.conftest import compose

    torch.manual_seed(0)
    trained = get_peft_model(copy.deepcopy(lively_lm[0]), LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                                     init_lora_weights=False))
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.inference_mode():
        want = trained(ids).logits  # the adapter's own answer: its update is not zero (init_lora_weights=False)
        assert not torch.allclose(want, lively_lm[0](ids).logits, atol=1e-2)
    assert answering(trained, compose("frozen=tiny").frozen, "cpu") is trained  # fp32: left as trained
    model = answering(trained, compose("frozen=tiny", "frozen.cpu_weights=fp16").frozen, "cpu")
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert isinstance(model.model.layers[0].self_attn.q_proj, FP16WeightLinear)  # merged, then packed
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits, want, atol=1e-2)


def test_cpu_weights_fp16_without_fbgemm_stops_at_load_with_one_line(monkeypatch):
    from alignpro.run.errors import BadInput
    from tests.conftest import compose

    monkeypatch.setattr("alignpro.models.frozen.quantized_engines", lambda: ["qnnpack", "none"])
    with pytest.raises(BadInput, match=r"^frozen.cpu_weights=fp16 needs torch's fbgemm kernels, which this build "
                                           r"of torch lacks \(its quantized engines: qnnpack, none\); use "
                                           r"frozen.cpu_weights=fp32$"):
        build_frozen(compose("frozen=tiny", "frozen.cpu_weights=fp16").frozen)


def test_cpu_weights_is_checked_in_validation():
    from alignpro.config.validate import ConfigError, validate
    from tests.conftest import compose

    with pytest.raises(ConfigError, match="frozen.cpu_weights='int8' is invalid: valid: fp32, fp16"):
        validate(compose("experiment=smoke", "frozen.cpu_weights=int8"))


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
