import pytest

from alignpro.schema import LORA_DEFAULTS, lora_options


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
    from alignpro.judge_local import SCORE_LINES
    from alignpro.schema import SCORE_LINE_MAX_TOKENS

    assert SCORE_LINE_MAX_TOKENS == max(map(len, SCORE_LINES)) == 6
