import math

import pytest

from alignpro.rollout import Sampling
from alignpro.trainer import RewardKLProgress, SequenceKL, kl_coefficient, trainer_args
from tests.conftest import compose


@pytest.mark.parametrize("lam", [0.05, 0.2, 1.0, 3])
def test_lam_is_the_kl_coefficient(lam):
    assert kl_coefficient(lam) == lam


@pytest.mark.parametrize("bad", [0, -0.1, math.nan, math.inf, "0.2"])
def test_lam_must_be_positive_finite(bad):
    with pytest.raises(ValueError, match="lam"):
        kl_coefficient(bad)


@pytest.mark.parametrize("name", ["rloo", "grpo"])
def test_trainer_args_map_the_config(name, tmp_path):
    cfg = compose(f"trainer={name}", "trainer.num_generations=3", "trainer.prompts_per_step=5").trainer
    args = trainer_args(cfg, lam=0.37, seed=4, output_dir=str(tmp_path), sampling=Sampling(11, 0.9, 0.8, 7),
                        device="cpu", report_to=[])
    assert args.beta == 0.37
    assert args.num_generations == 3 and args.per_device_train_batch_size == 15
    assert args.max_completion_length == 11 and (args.temperature, args.top_p, args.top_k) == (0.9, 0.8, 7)
    assert args.bf16 is False and args.use_cpu is True  # fp32 on CPU
    assert args.learning_rate == pytest.approx(1.41e-5)
    if name == "grpo":
        assert args.scale_rewards == "none"


def test_trainer_extra_passes_any_trl_option_and_wins(tmp_path):
    cfg = compose("+trainer.extra={max_grad_norm: 0.5, logging_steps: 5}").trainer
    args = trainer_args(cfg, lam=0.2, seed=0, output_dir=str(tmp_path), sampling=Sampling(4), device="cpu",
                        report_to=[])
    assert args.max_grad_norm == 0.5 and args.logging_steps == 5


def test_rloo_penalises_the_sequence_kl_with_beta():
    """The mapping assumed by kl_coefficient: TRL's RLOO subtracts beta * sum_t log-ratio from the reward."""
    import inspect

    from trl import RLOOTrainer

    src = inspect.getsource(RLOOTrainer._generate_and_score_completions)
    assert "kl = (per_token_kl * completion_mask).sum(-1)" in src
    assert "rewards = rewards - self.beta * kl" in src


def test_sequence_kl_is_per_token_kl_times_mean_length():
    logs = {"kl": 0.02, "completions/mean_length": 30.0, "reward": 1.0}
    SequenceKL().on_log(None, None, None, logs=logs)
    assert logs["kl_seq"] == pytest.approx(0.6)
    untouched = {"loss": 1.0}
    SequenceKL().on_log(None, None, None, logs=untouched)
    assert "kl_seq" not in untouched


def test_progress_bar_shows_reward_and_sequence_kl():
    from types import SimpleNamespace

    bar = RewardKLProgress("t")
    bar.on_train_begin(None, SimpleNamespace(max_steps=3), None)
    bar.on_log(None, None, None, logs={"reward": 1.25, "kl": 0.01, "kl_seq": 0.5})
    assert bar.bar.postfix == "reward=1.250, kl=0.500"
    bar.on_step_end(None, SimpleNamespace(global_step=2), None)
    assert bar.bar.n == 2
    bar.on_train_end(None, None, None)
