import pytest
from omegaconf import OmegaConf

from alignpro.frozen import build_frozen
from alignpro.methods import run_method
from tests.conftest import compose


def test_evaluation_only_arms(tmp_path, tiny_reward, embedded_splits):
    cfg = compose("experiment=smoke", "method=no_finetune")
    frozen = build_frozen(cfg.frozen)
    arm = run_method(cfg, train_records=embedded_splits.train, reward=tiny_reward, frozen=frozen, run_dir=tmp_path,
                     device="cpu", report_to=[], timer=None)
    assert arm.prompter is None and arm.responder is frozen
    cfg = compose("experiment=smoke", "method=base_prompter")
    arm = run_method(cfg, train_records=embedded_splits.train, reward=tiny_reward, frozen=frozen, run_dir=tmp_path,
                     device="cpu", report_to=[], timer=None)
    assert arm.prompter is not None and arm.responder is frozen
    assert not (tmp_path / "samples.jsonl").exists()  # nothing trained, nothing sampled


def test_unknown_method(tmp_path, tiny_reward, embedded_splits):
    cfg = OmegaConf.merge(compose("experiment=smoke"), {"method": {"name": "dpo"}})
    with pytest.raises(ValueError, match="method.name='dpo'.*alignpro, rlhf, no_finetune, base_prompter"):
        run_method(cfg, train_records=[], reward=tiny_reward, frozen=None, run_dir=tmp_path, device="cpu",
                   report_to=[], timer=None)
