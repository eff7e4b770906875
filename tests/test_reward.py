import pytest

from alignpro.models.reward import build_reward
from alignpro.models.reward_bt import BTEncoderReward
from tests.conftest import compose


def test_the_factory_builds_the_kind_the_config_names(embedded_splits):
    rm = build_reward(compose("reward=tiny").reward, embedded_splits.train, embedded_splits.heldout)
    assert isinstance(rm, BTEncoderReward) and rm.stats["heldout_accuracy"] > 0.5


def test_unknown_reward_kind_is_refused_by_the_validator():
    from omegaconf import OmegaConf

    from alignpro.config.validate import ConfigError, validate

    with pytest.raises(ConfigError, match="reward.kind='magic' is invalid: valid: bt_encoder, hf_classifier"):
        validate(OmegaConf.merge(compose("experiment=smoke"), {"reward": {"kind": "magic"}}))
