"""Align-Pro (paper eq. 9): RL-fine-tune the prompter ρ that rewrites x; the frozen model π_F is never updated.

    max_ρ   E_{x ~ D, x′ ~ ρ(·|x), y ~ π_F(·|x′)} [ r(x, y) ]   −   λ · KL( ρ(·|x) ‖ ρ_ref(·|x) )        (eq. 9)

This file is the method, top to bottom (``train_prompter``):

1. **rows**: each train prompt x becomes the prompter's input, the meta-prompt around x; x rides along as a column.
2. **reward function** (:class:`AlignProReward`): TRL samples k rewrites x′ ~ ρ(·|x) per prompt and hands them
   over; π_F answers each rewrite alone, y ~ π_F(·|x′) (eq. 3), and r(x, y) judges y against the *original* x (D5):
   the chain x → x′ → y → r that evaluation and the oracle share (alignpro/methods/rollout.py).
3. **β = λ** (D3): TRL's RLOO subtracts the KL term from each rewrite's reward, before the leave-one-out baseline.
   TRL 1.16, ``RLOOTrainer._generate_and_score_completions``::

       per_token_kl = old_per_token_logps - ref_per_token_logps
       kl = (per_token_kl * completion_mask).sum(-1)
       rewards = rewards - self.beta * kl

   So each rewrite is reinforced with r(x, y) − β·Σ_t log ρ(x′_t|·)/ρ_ref(x′_t|·), a single-sample estimate of the
   sequence-level KL(ρ(·|x) ‖ ρ_ref(·|x)): with β = λ the per-sample objective is eq. 9's (and Lemma 5.1's closed
   form). ``trainer=grpo`` puts a per-token k3 KL in the loss instead, the closest GRPO match, as an ablation.
   ρ_ref is the prompter before RL: with full fine-tuning TRL loads a second copy; with LoRA it disables the
   adapter (alignpro/methods/rl/ explains both).
4. **eq. 9's value, logged** (:class:`Objective`, alignpro/methods/objective.py, shared with the oracle):
   ``objective = reward − λ·kl_seq`` each step, next to its two terms, in W&B, ``train_log.jsonl`` and the bar.
5. **train, save** ρ to ``run_dir/prompter`` (with LoRA, the adapter), and return the arm for evaluation.
"""

from __future__ import annotations

from alignpro.methods.base import Arm, Job, Method
from alignpro.methods.objective import Objective
from alignpro.methods.rl import completion_text, fit
from alignpro.methods.rollout import TrainingReward, roll_out
from alignpro.methods.sft import reference_prompter
from alignpro.models.frozen import Responder
from alignpro.models.generation import GenerationEngine
from alignpro.models.prompter import Prompter, compose_rewrite, rewrite_conversation
from alignpro.models.reward import Reward
from alignpro.models.sampling import Sampling
from alignpro.models.trained import write_card
from alignpro.run.directory import RunDir, SampleLog
from alignpro.run.timing import StageTimer
from alignpro.run.tracking import resolved


class AlignProReward(TrainingReward):
    """The inner expectation of eq. 9 as TRL's reward function: x′ (TRL's completion) → y = π_F(x′) → r(x, y).
    Every (x, x′, y, r) of a step goes to ``samples.jsonl``; a non-finite reward stops the run (TrainingReward).

    An empty x′ is answered and scored like any other rewrite, and counted: the step's row logs
    ``empty_rewrites``, the share of its rewrites that were empty, and ``truncated_rewrites``, the share cut to fit
    π_F's context."""

    __name__ = "alignpro"  # TRL names the reward column after the function

    def __init__(self, frozen: Responder, reward: Reward, reward_prompt: str = "original",
                 samples: SampleLog | None = None, timer: StageTimer | None = None, rewrite: str = "full",
                 run_dir: RunDir | None = None):
        super().__init__(reward, samples, timer, run_dir)
        self.frozen, self.reward_prompt, self.rewrite = frozen, reward_prompt, rewrite

    def __call__(self, prompts, completions, x, kind=None, trainer_state=None, log_metric=None, **_) -> list[float]:
        # x′: the completion itself, or x followed by it (prompter.rewrite=append)
        rewrites = [compose_rewrite(xi, completion_text(c), self.rewrite) for xi, c in zip(x, completions, strict=True)]
        # π_F answers x′ alone (eq. 3); r(x, y) judges y against the original x (D5) unless reward.prompt=rewritten
        out = roll_out(list(x), self.reward, x_prime=rewrites, responder=self.frozen, judge=self.reward_prompt,
                       timer=self.timer)
        rewards = self.keep(out, trainer_state, kind)
        if log_metric is not None:  # into the step's logged row
            n = len(rewrites)
            log_metric("rewrite_chars", sum(map(len, rewrites)) / n)
            log_metric("answer_chars", sum(map(len, out.y)) / n)
            log_metric("empty_rewrites", out.empty_rewrites / n)
            log_metric("truncated_rewrites", out.truncated / n)
        return rewards


def train_prompter(job: Job) -> Arm:
    """Eq. 9 on the train prompts; returns the trained prompter in front of π_F."""
    cfg, p = job.cfg, job.cfg.prompter
    rho_ref = reference_prompter(job)  # the prompter as loaded, or ρ_sft (sft=instructions), trained once and cached
    # 1. the prompter's input: the meta-prompt around x; x (and its kind, for the samples) ride along as columns
    rows = [{"prompt": rewrite_conversation(r["prompt"], p.meta_prompt, p.system), "x": r["prompt"],
             "kind": r.get("kind")} for r in job.train_records]
    # 2. r(x, π_F(x′)) for every sampled rewrite
    reward_fn = AlignProReward(job.frozen, job.reward, cfg.reward.prompt, job.run_dir.sample_log(), job.timer,
                               p.rewrite, job.run_dir)
    # 3. β = λ: RLOO subtracts λ·KL(ρ‖ρ_ref) from each reward (docstring); 4. eq. 9's value logged each step
    trainer = fit(cfg, beta=cfg.lam, policy_path=rho_ref, rows=rows, reward_fn=reward_fn,
                  sampling=Sampling.from_config(p.sampling, p.max_new_tokens), dtype=p.dtype, run_dir=job.run_dir,
                  device=job.device, timer=job.timer, label="align-pro", tracker=job.tracker, lora=p.lora,
                  first_callbacks=[Objective(cfg.lam)], callbacks=job.callbacks)
    # 5. finished work is on disk before evaluation starts
    folder = job.run_dir.model("prompter")
    trainer.save_model(str(folder))
    write_card(folder, resolved(cfg))  # the rewrite settings and a model card beside the weights
    model = trainer.model.eval()  # with LoRA a PeftModel, evaluated with its adapter unmerged (alignpro/methods/rl/)
    engine = GenerationEngine.from_config(cfg.generation)
    prompter = Prompter(model, trainer.processing_class, p.meta_prompt, p.system, p.batch_size, engine,
                        p.rewrite)
    return Arm("alignpro", prompter, job.frozen)


class AlignPro(Method):
    """Eq. 9: fine-tune the prompter against r(x, π_F(x′)) with a KL leash to ρ_ref."""

    def run(self, job: Job) -> Arm:
        return train_prompter(job)
