import math

import pytest

from alignpro.rollout import Sampling
from alignpro.trainer import kl_coefficient, trainer_args
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


def test_rloo_penalises_the_sequence_kl_with_beta():
    """The mapping assumed by kl_coefficient: TRL's RLOO subtracts beta * sum_t log-ratio from the reward."""
    import inspect

    from trl import RLOOTrainer

    src = inspect.getsource(RLOOTrainer._generate_and_score_completions)
    assert "kl = (per_token_kl * completion_mask).sum(-1)" in src
    assert "rewards = rewards - self.beta * kl" in src
