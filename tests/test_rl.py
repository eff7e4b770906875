import pytest

from alignpro.methods.rl import RewardKLProgress, completion_text, trainer_args
from alignpro.models.sampling import Sampling
from tests.conftest import compose


@pytest.mark.parametrize("name", ["rloo", "grpo"])
def test_trainer_args_map_the_config(name, tmp_path):
    cfg = compose(f"trainer={name}", "trainer.num_generations=3", "trainer.prompts_per_step=5").trainer
    args = trainer_args(cfg, beta=0.37, seed=4, output_dir=str(tmp_path), sampling=Sampling(11, 0.9, 0.8, 7),
                        device="cpu")
    assert args.beta == 0.37
    assert args.num_generations == 3 and args.per_device_train_batch_size == 15
    assert args.max_completion_length == 11 and (args.temperature, args.top_p, args.top_k) == (0.9, 0.8, 7)
    assert args.bf16 is False and args.use_cpu is True  # fp32 on CPU
    assert args.learning_rate == pytest.approx(1.41e-5)
    if name == "grpo":
        assert args.scale_rewards == "none"


def test_trainer_extra_passes_any_trl_option_and_wins(tmp_path):
    cfg = compose("+trainer.extra={max_grad_norm: 0.5, logging_steps: 5}").trainer
    args = trainer_args(cfg, beta=0.2, seed=0, output_dir=str(tmp_path), sampling=Sampling(4), device="cpu")
    assert args.max_grad_norm == 0.5 and args.logging_steps == 5


def test_completion_text_reads_trls_conversational_and_plain_completions():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "ab"
    assert completion_text([{"role": "user", "content": "not the answer"}]) == ""


def test_progress_bar_shows_reward_and_sequence_kl():
    from types import SimpleNamespace

    from transformers import TrainerState

    bar = RewardKLProgress("t")
    bar.on_train_begin(None, TrainerState(max_steps=3), None)
    bar.on_log(None, None, None, logs={"reward": 1.25, "kl": 0.01, "kl_seq": 0.5})
    assert bar.bar.postfix == "reward=1.250, kl=0.500"
    bar.on_log(None, None, None, logs={"reward": 1.25, "kl": 0.01, "kl_seq": 0.5, "objective": 1.15})
    assert bar.bar.postfix == "reward=1.250, kl=0.500, objective=1.150"  # eq. 9's value, when it is logged
    bar.on_step_end(None, SimpleNamespace(global_step=2), None)
    assert bar.bar.n == 2
    bar.on_train_end(None, None, None)


def test_progress_bar_of_a_resumed_run_starts_at_its_step_and_only_process_zero_draws_one():
    from transformers import TrainerState

    resumed = RewardKLProgress("t")
    resumed.on_train_begin(None, TrainerState(max_steps=8, global_step=6), None)
    assert (resumed.bar.n, resumed.bar.total) == (6, 8)
    resumed.on_train_end(None, None, None)
    other = RewardKLProgress("t")
    other.on_train_begin(None, TrainerState(max_steps=8, is_world_process_zero=False), None)
    assert other.bar is None


# ---- LoRA (D7) ------------------------------------------------------------------------------------------------------
def test_lora_config_fills_defaults_and_passes_other_peft_fields():
    from alignpro.methods.rl import lora_config

    assert lora_config(None) is None and lora_config(False) is None  # full fine-tuning
    c = lora_config({"r": 8})
    assert (c.r, c.lora_alpha, c.lora_dropout, c.target_modules) == (8, 16, 0.05, "all-linear")
    assert c.task_type == "CAUSAL_LM"
    assert lora_config({}).r == 16  # an empty mapping is LoRA with every default
    c = lora_config({"r": 4, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "use_rslora": True})
    assert (c.r, c.lora_alpha, c.lora_dropout, c.use_rslora) == (4, 4, 0.0, True)
    assert set(c.target_modules) == {"q_proj", "v_proj"}


@pytest.mark.parametrize("bad, match", [({"r": 0}, "lora.r=0"), ({"r": 2.5}, "lora.r=2.5"), ({"alpha": -1}, "alpha"),
                                        ({"dropout": 1.0}, "dropout"), ({"rank": 8}, "valid keys"),
                                        ("yes", "null .full fine-tuning. or a mapping")])
def test_lora_config_rejects_bad_values(bad, match):
    from alignpro.methods.rl import lora_config

    with pytest.raises(ValueError, match=match):
        lora_config(bad)


def test_lora_is_on_for_the_large_models_and_off_for_the_small_ones():
    """D7: the 7-8B frozen models (trained by method=rlhf) and the 3.8B prompter get LoRA; 1.5B and smaller are
    fully fine-tuned (the memory arithmetic is in each yaml)."""
    from alignpro.methods.rl import lora_config

    for override, group in [("frozen=llama31_8b", "frozen"), ("frozen=qwen25_7b", "frozen"),
                            ("prompter=phi35_mini", "prompter")]:
        c = lora_config(compose(override)[group].lora)
        assert (c.r, c.lora_alpha, c.lora_dropout, c.target_modules) == (16, 32, 0.05, "all-linear"), override
    for override in ["prompter=qwen25_1_5b", "prompter=smollm2_135m", "prompter=tiny", "frozen=smollm2_135m",
                     "frozen=tiny"]:
        group = override.split("=")[0]
        assert compose(override)[group].lora is None, override


def test_lora_is_switched_on_and_off_from_the_command_line():
    from alignpro.methods.rl import lora_config

    assert lora_config(compose("prompter.lora={r: 8}").prompter.lora).lora_alpha == 16  # from null: a mapping
    assert lora_config(compose("frozen=llama31_8b", "frozen.lora.r=8").frozen.lora).r == 8  # one key of a mapping
    assert lora_config(compose("frozen=llama31_8b", "frozen.lora=null").frozen.lora) is None


def _tiny_trainer(tmp_path, lora, name: str = "rloo"):
    import torch

    from alignpro.methods.rl import build_trainer
    from alignpro.models.assets import tiny_model_dir

    cfg = compose("experiment=smoke", f"trainer={name}").trainer
    args = trainer_args(cfg, beta=0.2, seed=0, output_dir=str(tmp_path), sampling=Sampling(4), device="cpu")

    def constant(prompts, completions, **kwargs):
        return [0.0] * len(prompts)

    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "x": f"q{i}"} for i in range(4)]
    return build_trainer(cfg, model_path=str(tiny_model_dir("causal_lm")), model_dtype=torch.float32,
                         train_rows=rows, reward_fn=constant, args=args, callbacks=[], lora=lora)


@pytest.mark.parametrize("name", ["rloo", "grpo"])
def test_with_lora_trl_keeps_no_reference_copy_and_disables_the_adapter_instead(tmp_path, name):
    """TRL 1.16 with peft_config: no ρ_ref model is loaded; reference log-probs come from the same weights with the
    adapter disabled (= the untrained base, since a fresh adapter's B is 0)."""
    import inspect

    from peft import PeftModel
    from trl import GRPOTrainer, RLOOTrainer

    full = _tiny_trainer(tmp_path / "full", None, name)
    assert full.ref_model is not None and not isinstance(full.model, PeftModel)
    lora = _tiny_trainer(tmp_path / "lora", {"r": 4}, name)
    assert lora.ref_model is None and isinstance(lora.model, PeftModel)
    n_trainable = sum(p.numel() for p in lora.model.parameters() if p.requires_grad)
    assert 0 < n_trainable < 0.2 * sum(p.numel() for p in full.model.parameters() if p.requires_grad)
    src = inspect.getsource((RLOOTrainer if name == "rloo" else GRPOTrainer)._generate_and_score_completions)
    assert 'with use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None):' in src


def test_full_finetuning_trains_fp32_master_weights_lora_keeps_the_config_dtype():
    import torch

    from alignpro.methods.rl import training_dtype

    assert training_dtype("bfloat16", "cuda", None) == torch.float32  # pure-bf16 AdamW would round lr 1.41e-5 away
    assert training_dtype("auto", "cuda", None) == torch.float32
    assert training_dtype("auto", "cuda", {"r": 16}) == torch.bfloat16  # frozen base; peft keeps the adapter fp32
    assert training_dtype("auto", "cuda", {}) == torch.bfloat16  # {} = LoRA with defaults
    assert training_dtype("auto", "cpu", {"r": 16}) == torch.float32


@pytest.mark.parametrize("name", ["rloo", "grpo"])
def test_checkpoints_hold_what_a_resume_needs_and_vllm_options_pass_through(name, tmp_path):
    cfg = compose(f"trainer={name}", "trainer.save_steps=7", "trainer.save_total_limit=2", "trainer.use_vllm=true",
                  "trainer.vllm_mode=server", "trainer.vllm_server_base_url=http://gpu-node:8000").trainer
    args = trainer_args(cfg, beta=0.2, seed=0, output_dir=str(tmp_path), sampling=Sampling(4), device="cpu")
    assert (args.save_strategy, args.save_steps, args.save_total_limit) == ("steps", 7, 2)
    assert args.save_only_model is False  # optimizer, scheduler and RNG too
    assert (args.use_vllm, args.vllm_mode, args.vllm_server_base_url) == (True, "server", "http://gpu-node:8000")
    off = trainer_args(compose(f"trainer={name}", "trainer.save_steps=0").trainer, beta=0.2, seed=0,
                       output_dir=str(tmp_path), sampling=Sampling(4), device="cpu")
    assert off.save_strategy == "no" and off.use_vllm is False and off.vllm_mode == "colocate"


def test_trainer_extra_takes_the_trl_configs_fields_only():
    from alignpro.config.rules import ConfigError
    from alignpro.methods.rl import check_trainer_extra

    check_trainer_extra(compose("experiment=smoke", "+trainer.extra.num_iterations=2").trainer)
    check_trainer_extra(compose("experiment=smoke", "trainer=grpo", "+trainer.extra.epsilon_high=0.3").trainer)
    with pytest.raises(ConfigError, match="trainer.extra.num_iteration is not an option of trl.RLOOConfig; did you "
                                          "mean num_iterations"):
        check_trainer_extra(compose("experiment=smoke", "+trainer.extra.num_iteration=2").trainer)


def test_the_paper_budget_is_one_rollout_per_train_prompt_in_batches_trained_four_times(tmp_path):
    """D12: legacy PPO's 128-rollout batches, 4 epochs each, one pass; here 32 prompts × 4 rewrites per batch."""
    from alignpro.methods.rl import resolve_max_steps

    cfg = compose("experiment=paper/qwen25_1_5b_llama31_8b_ultrafeedback").trainer
    assert (cfg.prompts_per_step, cfg.num_generations, cfg.num_iterations, cfg.max_steps) == (32, 4, 4, "paper")
    assert cfg.extra == {"normalize_advantages": True}
    assert resolve_max_steps(cfg, 61_135) == 478 * 4  # UltraFeedback's train_prefs: 1,912 updates
    assert resolve_max_steps(cfg, 128) == 4 and resolve_max_steps(cfg, 129) == 8
    cfg.max_steps = 7
    assert resolve_max_steps(cfg, 10**6) == 7  # a number is a number
    cfg.max_steps = 8
    args = trainer_args(cfg, beta=0.2, seed=0, output_dir=str(tmp_path), sampling=Sampling(4), device="cpu")
    assert args.num_iterations == 4 and args.normalize_advantages
    # one 128-rollout update in 2 passes of 64, one generation per update
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.steps_per_generation) == (64, 2, 2)
    assert args.generation_batch_size == 128


def test_micro_batches_must_divide_the_batch():
    from alignpro.config.rules import ConfigError
    from alignpro.config.validate import validate

    with pytest.raises(ConfigError, match=r"trainer.micro_batches=3 is invalid: must divide .* = 4 rollouts"):
        validate(compose("experiment=smoke", "trainer.micro_batches=3"))
    validate(compose("experiment=smoke", "trainer.micro_batches=2"))


# ---- TRL's private attributes, behind one door ----------------------------------------------------------------------
def test_the_installed_trl_has_every_private_attribute_alignpro_uses_and_a_missing_one_is_named(monkeypatch, tmp_path):
    import trl

    from alignpro.methods.rl import trl_internals

    trl_internals.check_trl_internals()
    assert ("RLOOTrainer", "_generate") in trl_internals.PRIVATE_TRL_ATTRIBUTES
    monkeypatch.setattr(trl_internals, "PRIVATE_TRL_ATTRIBUTES",
                        (*trl_internals.PRIVATE_TRL_ATTRIBUTES, ("GRPOTrainer", "_renamed_in_a_later_trl")))
    with pytest.raises(RuntimeError, match=rf"TRL {trl.__version__} lacks trl.GRPOTrainer._renamed_in_a_later_trl"):
        trl_internals.check_trl_internals()
    with pytest.raises(RuntimeError, match="_renamed_in_a_later_trl"):  # checked before any model loads
        _tiny_trainer(tmp_path, None, "grpo")


def test_only_trl_internals_touches_a_trainers_private_attributes():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    door = root / "alignpro" / "methods" / "rl" / "trl_internals.py"
    files = [p for folder in ("alignpro", "benchmarks") for p in (root / folder).rglob("*.py") if p != door]
    found = [f"{p.relative_to(root)}:{n}" for p in files
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"\btrainer\._[A-Za-z]", line)]
    assert not found, f"private TRL attributes outside alignpro/methods/rl/trl_internals.py: {found}"
    assert re.search(r"\btrainer\._[A-Za-z]", door.read_text(encoding="utf-8"))


def test_the_rl_package_and_its_config_helpers_import_without_torch_or_trl():
    """Config validation and the plan tool call resolve_max_steps/check_trainer_extra before anything loads."""
    import subprocess
    import sys

    code = ("import sys; from alignpro.methods.rl import check_trainer_extra, lora_config, resolve_max_steps; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
