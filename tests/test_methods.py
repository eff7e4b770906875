import subprocess
import sys

from alignpro.methods.registry import METHODS, Job, run_method
from alignpro.models.frozen import build_frozen
from tests.conftest import compose


def test_evaluation_only_arms(tmp_path, tiny_reward, embedded_splits):
    cfg = compose("experiment=smoke", "method=no_finetune")
    frozen = build_frozen(cfg.frozen)
    arm = run_method(Job(cfg, embedded_splits.train, tiny_reward, frozen, tmp_path))
    assert arm.prompter is None and arm.responder is frozen
    cfg = compose("experiment=smoke", "method=base_prompter")
    arm = run_method(Job(cfg, embedded_splits.train, tiny_reward, frozen, tmp_path))
    assert arm.prompter is not None and arm.responder is frozen
    assert not (tmp_path / "samples.jsonl").exists()  # nothing trained, nothing sampled


def test_the_registry_declares_what_each_arm_trains_and_loads():
    assert list(METHODS) == ["no_finetune", "fixed_instruction", "base_prompter", "best_of_n", "alignpro",
                             "rlhf", "trained"]  # the reports' order
    declared = {name: (m.trains, m.needs_frozen, m.uses_prompter, m.reads_menu) for name, m in METHODS.items()}
    assert declared == {"no_finetune": (None, True, False, False), "base_prompter": (None, True, True, False),
                        "fixed_instruction": (None, True, False, True), "best_of_n": (None, True, True, False),
                        "alignpro": ("prompter", True, True, False), "rlhf": ("frozen", False, False, False),
                        "trained": (None, True, True, False)}
    assert all(m.label and m.description for m in METHODS.values())


def test_the_registry_and_the_validator_import_no_torch():
    """The arms are known, and a config is checked, without loading torch (the validator runs before models)."""
    code = ("import sys; import alignpro.methods.registry, alignpro.config.validate, alignpro.config.schema, "
            "alignpro.report; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- LoRA (D7): only the adapter trains, ρ_ref is the untouched base, the saved adapter reloads ----------------------
def split_peft_parameters(model) -> tuple[dict, dict]:
    """(base weights under the reference model's names, adapter weights) of a peft-wrapped causal LM."""
    base, adapter = {}, {}
    for name, p in model.named_parameters():
        if "lora_" in name:
            adapter[name] = p.detach().clone()
        else:
            base[name.removeprefix("base_model.model.").replace(".base_layer", "")] = p.detach().clone()
    return base, adapter


def logits(model, tok, text: str = "Rephrase the given text in detail"):
    import torch

    with torch.no_grad():
        return model(**tok([text], return_tensors="pt")).logits


def check_lora_run(model, saved, r: int, responder: bool = False) -> None:
    """Only adapter parameters trained; the base equals the untrained model (= ρ_ref); the adapter moved.
    A trained oracle comes back as the evaluation responder, frozen (no parameter requires grad)."""
    import json

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from alignpro.models.assets import tiny_model_dir

    assert isinstance(model, PeftModel)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not trainable if responder else (trainable and all("lora_" in n for n in trainable))
    base, adapter = split_peft_parameters(model)
    reference = dict(AutoModelForCausalLM.from_pretrained(tiny_model_dir("causal_lm")).named_parameters())
    assert base.keys() == reference.keys()
    assert all((base[k] == reference[k]).all() for k in base)  # bit-identical: the base never trained
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at 0: it trained
    files = {p.name for p in saved.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= files
    assert "model.safetensors" not in files  # only the adapter is saved, not a copy of the base
    meta = json.loads((saved / "adapter_config.json").read_text())
    assert meta["r"] == r and meta["lora_alpha"] == 2 * r


def test_alignpro_with_lora_trains_only_the_prompters_adapter(tmp_path, tiny_reward, embedded_splits):
    import torch

    from alignpro.models.prompter import load_prompter
    from alignpro.models.sampling import Sampling
    from alignpro.report.evaluate import evaluate

    cfg = compose("experiment=smoke", "method=alignpro", "prompter.lora={r: 4}", "trainer.learning_rate=1e-2")
    arm = run_method(Job(cfg, embedded_splits.train, tiny_reward, build_frozen(cfg.frozen), tmp_path))
    model, tok = arm.prompter.model, arm.prompter.tokenizer
    check_lora_run(model, tmp_path / "prompter", r=4)
    # The saved adapter folder reloads as the trained model, not as the base.
    reloaded = load_prompter(cfg.prompter, path=str(tmp_path / "prompter"))
    assert torch.allclose(logits(reloaded.model, tok), logits(model.eval(), tok), atol=1e-5)
    with model.disable_adapter():
        assert not torch.allclose(logits(model, tok), logits(reloaded.model, tok), atol=1e-4)
    # Evaluation runs on the trained (peft-wrapped, unmerged) prompter.
    summary, rows = evaluate(arm, ["How do I boil an egg?", "Name a colour."], tiny_reward, Sampling(4), Sampling(4))
    assert summary["n"] == 2 and all(s.x_prime is not None for s in rows)


def test_rlhf_with_lora_trains_only_the_frozen_models_adapter(tmp_path, tiny_reward, embedded_splits):
    import torch

    from alignpro.models.sampling import Sampling
    from alignpro.report.evaluate import evaluate

    cfg = compose("experiment=smoke", "method=rlhf", "frozen.lora={r: 2}", "trainer.learning_rate=1e-2")
    arm = run_method(Job(cfg, embedded_splits.train, tiny_reward, None, tmp_path))
    assert arm.prompter is None
    model, tok = arm.responder.model, arm.responder.tokenizer
    check_lora_run(model, tmp_path / "oracle", r=2, responder=True)
    oracle = build_frozen(cfg.frozen, path=str(tmp_path / "oracle"))
    assert torch.allclose(logits(oracle.model, tok), logits(model.eval(), tok), atol=1e-5)
    summary, _ = evaluate(arm, ["How do I boil an egg?"], tiny_reward, Sampling(4), Sampling(4))
    assert summary["n"] == 1
