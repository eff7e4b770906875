import dataclasses

import pytest
from omegaconf import OmegaConf

from alignpro.config import schema
from alignpro.config.rules import LORA_DEFAULTS, ConfigError, check, lora_options, typed
from alignpro.config.schema import Config
from tests.conftest import CONF, compose_raw


def test_lora_options_fill_the_defaults():
    assert lora_options(None) is None and lora_options(False) is None  # full fine-tuning
    assert lora_options({}) == {**LORA_DEFAULTS, "alpha": 32}  # {} is LoRA with every default, alpha = 2r
    assert lora_options({"r": 4, "use_rslora": True}) == {**LORA_DEFAULTS, "r": 4, "alpha": 8, "use_rslora": True}


@pytest.mark.parametrize("bad, match", [({"r": 0}, "lora.r=0"), ({"r": True}, "lora.r=True"),
                                        ({"alpha": 0}, "lora.alpha=0"), ({"dropout": -0.1}, "lora.dropout=-0.1"),
                                        ([16], "null .full fine-tuning. or a mapping")])
def test_lora_options_name_the_bad_value(bad, match):
    with pytest.raises(ValueError, match=match):
        lora_options(bad)


def test_the_judge_score_line_budget_is_the_longest_allowed_line():
    from alignpro.config.schema import SCORE_LINE_MAX_TOKENS
    from alignpro.report.judge_local import SCORE_LINES

    assert SCORE_LINE_MAX_TOKENS == max(map(len, SCORE_LINES)) == 6


# -- the typed schema -----------------------------------------------------------------------------------------------

GROUP_SCHEMAS = {"prompter": schema.PrompterConfig, "frozen": schema.FrozenConfig, "reward": schema.RewardConfig,
                 "dataset": schema.DatasetConfig, "method": schema.MethodConfig, "trainer": schema.TrainerConfig,
                 "sft": schema.SFTConfig, "logger": schema.LoggerConfig, "judge": schema.JudgeConfig}
OPTIONS = [(g, p.stem) for g in [*GROUP_SCHEMAS, "meta_prompt"] for p in sorted((CONF / g).glob("*.yaml"))]


def option(group: str, name: str) -> list[str]:
    return [f"+judge={name}"] if group == "judge" else [f"{group}={name}"]


@pytest.mark.parametrize("group, name", OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_every_shipped_option_types_and_checks(group, name):
    cfg = typed(compose_raw(*option(group, name)), Config)
    assert OmegaConf.get_type(cfg) is Config
    if (group, name) == ("reward", "hf_classifier"):  # the one option that leaves a key to the user
        with pytest.raises(ConfigError, match=r"reward.model_id='\?\?\?' is invalid: reward=hf_classifier needs"):
            check(cfg, Config)
        check(typed(compose_raw("reward=hf_classifier", "reward.model_id=org/rm"), Config), Config)
    else:
        check(cfg, Config)


def test_every_schema_key_is_set_by_some_shipped_option():
    """No dead keys: each field of a group's dataclass is written by at least one of the group's YAML files
    (nested blocks such as ``sampling`` or ``fit`` count as one key)."""
    import yaml

    for group, cls in GROUP_SCHEMAS.items():
        written = set()
        for f in (CONF / group).glob("*.yaml"):
            written |= set(yaml.safe_load(f.read_text()) or {})
        if group == "prompter":  # the meta_prompt group is packaged into prompter
            for f in (CONF / "meta_prompt").glob("*.yaml"):
                written |= set(yaml.safe_load(f.read_text()) or {})
        fields = {f.name for f in dataclasses.fields(cls)}
        assert fields - written == set(), group


def test_typed_fills_the_defaults_and_types_the_values():
    cfg = typed(compose_raw("lam=1", "trainer=rloo"), Config)
    assert cfg.lam == 1.0 and isinstance(cfg.lam, float)  # an int given for a float key becomes a float
    assert cfg.trainer.loss_type == "dr_grpo"  # rloo.yaml has no loss_type: the schema's default
    assert cfg.prompter.rewrite == "full" and cfg.judge is None and cfg.eval.rewrite_sampling is None
    assert OmegaConf.get_type(cfg.prompter.sampling) is schema.SamplingConfig


@pytest.mark.parametrize("override, message", [
    ("lam=abc", "lam='abc' is invalid: the paper's λ (KL weight of eq. 9) must be a finite number > 0; try lam=0.2"),
    ("trainer.num_iterations=2.5", "trainer.num_iterations=2.5 is invalid: must be an integer > 0"),
    ("generation.bucket=maybe", "generation.bucket='maybe' is invalid: must be true or false"),
    ("frozen.system=[a]", "frozen.system=['a'] is invalid: must be a string"),
    ("trainer.bf16=null", "trainer.bf16=None is invalid: must be true or false"),
    ("seed=x", "seed='x' is invalid: must be an integer"),
])
def test_a_value_of_the_wrong_type_is_named_with_what_is_valid(override, message):
    with pytest.raises(ConfigError) as err:
        typed(compose_raw(override), Config)
    assert str(err.value) == message


def test_an_unknown_key_is_refused_with_the_keys_of_its_group():
    with pytest.raises(ConfigError, match=r"^trainer.lerning_rate is not a config key; valid keys here: name, "
                                          r"num_generations, prompts_per_step, max_steps, num_iterations, "
                                          r"micro_batches, learning_rate, "):
        typed(compose_raw("+trainer.lerning_rate=1e-5"), Config)
    with pytest.raises(ConfigError, match=r"^colour is not a config key; valid keys here: lam, seed, device, "):
        typed(compose_raw("+colour=red"), Config)


@pytest.mark.parametrize("override, message", [
    ("generation.compile=1", "generation.compile=1 is invalid: auto, true or false"),  # 1 == True, but not a bool
    ("generation.compile=yes", "generation.compile='yes' is invalid: auto, true or false"),
    ("logger.mode=online2", "logger.mode='online2' is invalid: null (auto), online, offline or disabled"),
    ("trainer.warmup_steps=-1", "trainer.warmup_steps=-1 is invalid: must be an integer ≥ 0"),
    ("reward.fit.weight_decay=-0.1", "reward.fit.weight_decay=-0.1 is invalid: must be a number ≥ 0"),
    ("eval.max_new_tokens=0", "eval.max_new_tokens=0 is invalid: must be an integer > 0"),
    # an integer or `paper`, so its type is checked with its range
    ("trainer.max_steps=abc", "trainer.max_steps='abc' is invalid: must be an integer > 0, or paper (the paper's "
                              "budget: one rollout per train prompt)"),
    ("trainer.max_steps=2.5", "trainer.max_steps=2.5 is invalid: must be an integer > 0, or paper (the paper's "
                              "budget: one rollout per train prompt)"),
])
def test_check_applies_each_keys_choices_and_range(override, message):
    cfg = typed(compose_raw(override), Config)
    with pytest.raises(ConfigError) as err:
        check(cfg, Config)
    assert str(err.value) == message


def test_null_passes_an_optional_key_only():
    check(typed(compose_raw("eval.max_new_tokens=null", "logger.mode=null"), Config), Config)  # both may be null
    with pytest.raises(ConfigError, match=r"^eval.n_prompts=None is invalid: must be an integer > 0$"):
        typed(compose_raw("eval.n_prompts=null"), Config)
