"""The RLHF oracle (D7): the frozen model itself RL-fine-tuned with eq. 9's objective, π_F in place of ρ.

    max_π   E_{x ~ D, y ~ π(·|x)} [ r(x, y) ]   −   λ · KL( π(·|x) ‖ π_F(·|x) )

The same trainer, reward, prompts, λ and step budget as Align-Pro (alignpro/methods/alignpro.py), so the two differ
only in which model learns: here the policy's completion *is* the answer y to x, with no rewrite and no prompter.
It is the ceiling the paper compares against: what a model owner who can train the weights would get.
"""

from __future__ import annotations

from alignpro.methods.base import Arm, Job, Method
from alignpro.methods.objective import Objective
from alignpro.methods.rl import completion_text, fit
from alignpro.methods.rollout import TrainingReward, roll_out
from alignpro.models.chat import chat
from alignpro.models.frozen import HFResponder, answering, frozen_path
from alignpro.models.generation import GenerationEngine
from alignpro.models.sampling import Sampling


class OracleReward(TrainingReward):
    """TRL's reward function for the oracle: Align-Pro's chain (alignpro/methods/rollout.py) with x′ = x and the
    policy itself answering, so its completion is y and only r(x, y) is left to compute."""

    __name__ = "oracle"

    def __call__(self, prompts, completions, x, kind=None, trainer_state=None, **_) -> list[float]:
        out = roll_out(list(x), self.reward, y=[completion_text(c) for c in completions], timer=self.timer)
        return self.keep(out, trainer_state, kind)


def train_oracle(job: Job) -> Arm:
    """Fine-tune π_F on the train prompts x; returns it as the responder (no prompter)."""
    cfg, f = job.cfg, job.cfg.frozen
    rows = [{"prompt": chat(r["prompt"], f.system), "x": r["prompt"], "kind": r.get("kind")} for r in job.train_records]
    sampling = Sampling.from_config(f.sampling, f.max_new_tokens)  # the policy's rollouts, then its answers
    trainer = fit(cfg, beta=cfg.lam, policy_path=frozen_path(f), rows=rows,
                  reward_fn=OracleReward(job.reward, job.run_dir.sample_log(), job.timer, job.run_dir),
                  sampling=sampling, dtype=f.dtype, run_dir=job.run_dir, device=job.device,
                  timer=job.timer, label="rlhf-oracle", tracker=job.tracker, lora=f.lora,
                  first_callbacks=[Objective(cfg.lam)], callbacks=job.callbacks)
    trainer.save_model(str(job.run_dir.model("oracle")))
    engine = GenerationEngine.from_config(cfg.generation)
    model = answering(trainer.model.eval(), f, job.device)
    return Arm("rlhf", None, HFResponder(model, trainer.processing_class, sampling, f.system, f.batch_size, engine))


class RLHFOracle(Method):
    """The frozen model itself RL-fine-tuned, same trainer, reward and prompts (D7)."""

    def run(self, job: Job) -> Arm:
        return train_oracle(job)
