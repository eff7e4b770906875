"""The RLHF oracle (D7): the frozen model itself RL-fine-tuned with eq. 9's objective, π_F in place of ρ.

    max_π   E_{x ~ D, y ~ π(·|x)} [ r(x, y) ]   −   λ · KL( π(·|x) ‖ π_F(·|x) )

The same trainer, reward, prompts, λ and step budget as Align-Pro (alignpro/methods/alignpro.py), so the two differ
only in which model learns: here the policy's completion *is* the answer y to x, with no rewrite and no prompter.
It is the ceiling the paper compares against: what a model owner who can train the weights would get.
"""

from __future__ import annotations

from alignpro.methods.alignpro import Objective
from alignpro.methods.registry import Arm, Job
from alignpro.methods.rl import completion_text, fit
from alignpro.models.frozen import HFResponder, frozen_path
from alignpro.models.generation import GenerationEngine, Sampling, chat
from alignpro.models.reward import Reward
from alignpro.run.directory import RunDir, Sample, SampleLog
from alignpro.run.numerics import require_finite_rewards, training_step
from alignpro.run.timing import StageTimer


class OracleReward:
    """TRL's reward function for the oracle: its completion is y; r = r(x, y). Samples go to ``samples.jsonl``; a
    non-finite reward stops the run before TRL sees it (alignpro/run/numerics.py)."""

    __name__ = "oracle"

    def __init__(self, reward: Reward, samples: SampleLog | None = None, timer: StageTimer | None = None,
                 run_dir: RunDir | None = None):
        self.reward = reward
        self.samples = samples or SampleLog(None)
        self.timer = timer or StageTimer()
        self.run_dir = run_dir  # where a non-finite reward's samples are saved

    def __call__(self, prompts, completions, x, trainer_state=None, **_) -> list[float]:
        answers = [completion_text(c) for c in completions]
        with self.timer("reward"):
            rewards = self.reward.score(list(x), answers)
        step, label = training_step(trainer_state)
        samples = [Sample(xi, None, yi, ri, step) for xi, yi, ri in zip(x, answers, rewards, strict=True)]
        require_finite_rewards(samples, where=f"{label} (the oracle reward)", run_dir=self.run_dir, step=step,
                               consequence="the run stopped before training on them")
        self.samples.write(samples)
        return rewards


def train_oracle(job: Job) -> Arm:
    """Fine-tune π_F on the train prompts x; returns it as the responder (no prompter)."""
    cfg, f = job.cfg, job.cfg.frozen
    rows = [{"prompt": chat(r["prompt"], f.system), "x": r["prompt"]} for r in job.train_records]
    sampling = Sampling.from_config(f.sampling, f.max_new_tokens)  # the policy's rollouts, then its answers
    trainer = fit(cfg, beta=cfg.lam, policy_path=frozen_path(f), rows=rows,
                  reward_fn=OracleReward(job.reward, job.run_dir.sample_log(), job.timer, job.run_dir),
                  sampling=sampling, dtype=f.dtype, run_dir=job.run_dir, device=job.device,
                  timer=job.timer, label="rlhf-oracle", tracker=job.tracker, lora=f.lora,
                  first_callbacks=[Objective(cfg.lam)], callbacks=job.callbacks)
    trainer.save_model(str(job.run_dir.model("oracle")))
    engine = GenerationEngine.from_config(cfg.generation)
    return Arm("rlhf", None, HFResponder(trainer.model.eval(), trainer.processing_class, sampling, f.system,
                                         f.batch_size, engine))
