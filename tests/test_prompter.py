import pytest

from alignpro.models.prompter import PAPER_META_PROMPT, Prompter, meta_prompt_text, rewrite_conversation
from alignpro.models.sampling import Sampling

PAPER = ("Rephrase the given text in detail and precise so that it is fed to another language model. "
         "The given text is 'How do I boil an egg?'")


def test_meta_prompt_is_the_papers_exact_string():
    assert meta_prompt_text("How do I boil an egg?") == PAPER


def test_braces_and_quotes_in_the_prompt_survive():
    x = "Explain {x: 1} and 'quotes' in f\"{strings}\""
    assert meta_prompt_text(x).endswith(f"'{x}'")


def test_meta_prompt_without_placeholder_is_rejected():
    from alignpro.config.validate import ConfigError, validate
    from tests.conftest import compose

    with pytest.raises(ConfigError, match=r"prompter.meta_prompt='Rewrite this please' is invalid.*\[PROMPT\]"):
        validate(compose("experiment=smoke", "prompter.meta_prompt=Rewrite this please"))


def test_conversation_puts_meta_prompt_in_user_turn():
    conv = rewrite_conversation("Hi?")
    assert conv == [{"role": "user", "content": meta_prompt_text("Hi?")}]
    with_sys = rewrite_conversation("Hi?", system="SYS")
    assert with_sys[0] == {"role": "system", "content": "SYS"} and with_sys[1]["role"] == "user"


def test_chat_template_renders_meta_prompt_as_user_turn(tiny_lm):
    _, tok = tiny_lm
    text = tok.apply_chat_template([rewrite_conversation("Hi?")], tokenize=False, add_generation_prompt=True)[0]
    assert text == f"<|im_start|>user\n{meta_prompt_text('Hi?')}<|im_end|>\n<|im_start|>assistant\n"


def test_prompter_rewrites_each_prompt_from_its_meta_prompt(lively_lm):
    from alignpro.models.generation import generate_chat

    model, tok = lively_lm
    greedy = Sampling(5, temperature=0)
    p = Prompter(model, tok, PAPER_META_PROMPT, batch_size=2)
    prompts = ["a", "How do rivers form?", "c"]
    out = p.rewrite(prompts, greedy)
    # x′ is the model's greedy output on the meta-prompt around that x, in order, across batches of 2
    assert out == [generate_chat(model, tok, [rewrite_conversation(x)], greedy)[0] for x in prompts]
    assert len(set(out)) == 3


def test_load_prompter_loads_a_saved_lora_adapter_folder(tmp_path):
    """What a LoRA run leaves in run_dir/prompter (adapter + tokenizer, no full weights) loads as the trained model."""
    import torch
    from peft import get_peft_model

    from alignpro.methods.rl import lora_config
    from alignpro.models.assets import load_causal_lm, tiny_model_dir
    from alignpro.models.prompter import load_prompter
    from tests.conftest import compose

    base, tok = load_causal_lm(str(tiny_model_dir("causal_lm")))
    trained = get_peft_model(base, lora_config({"r": 4}))
    torch.manual_seed(1)
    with torch.no_grad():  # B = 0 at init would make the adapter a no-op; give it a trained-looking value
        for name, param in trained.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    trained.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert not (tmp_path / "model.safetensors").exists() and (tmp_path / "adapter_model.safetensors").exists()

    loaded = load_prompter(compose("prompter=tiny").prompter, path=str(tmp_path))
    ids = tok(["Rephrase the given text"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = trained.eval()(input_ids=ids).logits
        got = loaded.model(input_ids=ids).logits
        with trained.disable_adapter():
            untrained = trained(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, untrained, atol=1e-3)  # the adapter is applied, not just the base weights
    assert len(loaded.rewrite(["a", "b"], Sampling(max_new_tokens=3))) == 2


def test_compose_rewrite_full_and_append():
    from alignpro.models.prompter import compose_rewrite

    assert compose_rewrite("Why is the sky blue?", "Explain the sky.", "full") == "Explain the sky."
    assert compose_rewrite("Why is the sky blue?", "  Be brief.\n", "append") == "Why is the sky blue? Be brief."
    with pytest.raises(ValueError, match="prompter.rewrite='both' is unknown; valid: full, append"):
        compose_rewrite("x", "y", "both")


def test_append_prompter_keeps_x_in_every_rewrite(tiny_lm):
    model, tok = tiny_lm
    p = Prompter(model, tok, "Add an instruction: [PROMPT]", batch_size=2, mode="append")
    xs = ["How do tides work?", "What is a prime?", "Why do cats purr?"]
    out = p.rewrite(xs, Sampling(max_new_tokens=4))
    raw = p.generate(xs, Sampling(max_new_tokens=4, temperature=0))
    assert all(o.startswith(x) for o, x in zip(out, xs, strict=True))
    greedy = p.rewrite(xs, Sampling(max_new_tokens=4, temperature=0))
    assert greedy == [f"{x} {g.strip()}".strip() for x, g in zip(xs, raw, strict=True)]
