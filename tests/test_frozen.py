import pytest
from omegaconf import OmegaConf

from alignpro.frozen import HFFrozen, build_frozen
from alignpro.rollout import Sampling


def test_frozen_sees_only_the_prompt_in_its_user_turn(tiny_lm, monkeypatch):
    model, tok = tiny_lm
    seen = {}

    def record(model_, tok_, convs, sampling, batch_size, desc=None):
        seen["convs"] = convs
        return ["y"] * len(convs)

    monkeypatch.setattr("alignpro.frozen.generate_chat", record)
    HFFrozen(model, tok, Sampling(4)).answer(["x-prime one", "x-prime two"])
    assert seen["convs"] == [[{"role": "user", "content": "x-prime one"}], [{"role": "user", "content": "x-prime two"}]]


def test_frozen_model_has_no_trainable_parameters_and_answers_each_prompt(tiny_lm):
    model, tok = tiny_lm
    f = HFFrozen(model, tok, Sampling(4), batch_size=2)
    assert not any(p.requires_grad for p in model.parameters())
    out = f.answer(["a", "b", "c"])
    assert len(out) == 3


def test_sampling_override_at_call_time(tiny_lm):
    model, tok = tiny_lm
    f = HFFrozen(model, tok, Sampling(2, temperature=0))
    assert f.answer(["a"]) == f.answer(["a"])  # greedy by default
    assert len(f.answer(["a"], Sampling(3, 1.5, 0.6, 20))) == 1


def test_build_frozen_from_config_and_unknown_backend():
    from tests.conftest import compose

    cfg = compose("frozen=tiny").frozen
    f = build_frozen(cfg)
    assert f.sampling.max_new_tokens == cfg.max_new_tokens
    bad = OmegaConf.merge(cfg, {"backend": "grpc"})
    with pytest.raises(ValueError, match="backend='grpc'.*valid: hf"):
        build_frozen(bad)
