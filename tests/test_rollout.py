import pytest
import torch

from alignpro.rollout import Sampling, chat_inputs, generate_chat


def test_sampling_kwargs_greedy_and_paper():
    assert Sampling(5, temperature=0).generate_kwargs() == {"do_sample": False, "max_new_tokens": 5}
    kw = Sampling(256, 1.5, 0.6, 20).generate_kwargs()
    assert kw == {"do_sample": True, "temperature": 1.5, "top_p": 0.6, "top_k": 20, "max_new_tokens": 256}


def test_batched_greedy_equals_one_by_one(tiny_lm):
    """Left padding must not change what a row generates."""
    model, tok = tiny_lm
    convs = [[{"role": "user", "content": c}] for c in ("Hi", "A much longer prompt about cooking pasta", "Why?")]
    greedy = Sampling(6, temperature=0)
    batched = generate_chat(model, tok, convs, greedy, batch_size=3)
    single = [generate_chat(model, tok, [c], greedy, batch_size=1)[0] for c in convs]
    assert batched == single


def test_chat_inputs_left_pads(tiny_lm):
    _, tok = tiny_lm
    enc = chat_inputs(tok, [[{"role": "user", "content": "short"}], [{"role": "user", "content": "much " * 10}]])
    assert enc["attention_mask"][0, 0] == 0 and enc["attention_mask"][0, -1] == 1


def test_sampling_is_seeded(tiny_lm):
    model, tok = tiny_lm
    conv = [[{"role": "user", "content": "Tell me"}]] * 2
    torch.manual_seed(0)
    a = generate_chat(model, tok, conv, Sampling(6, 1.5, 0.6, 20))
    torch.manual_seed(0)
    assert generate_chat(model, tok, conv, Sampling(6, 1.5, 0.6, 20)) == a


def test_tokenizer_without_chat_template_is_a_clear_error(tiny_lm):
    _, tok = tiny_lm
    saved, tok.chat_template = tok.chat_template, None
    try:
        with pytest.raises(ValueError, match="no chat template"):
            chat_inputs(tok, [[{"role": "user", "content": "x"}]])
    finally:
        tok.chat_template = saved
