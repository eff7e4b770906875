"""The arms that train nothing (D2): π_F answering x, the prompter before RL rewriting x for π_F, and a prompter
trained in another run rewriting x for this run's π_F (``method=trained``, ``python -m alignpro.evaluate``)."""

from __future__ import annotations

from alignpro.methods.base import Arm, Job, Method


class NoFinetune(Method):
    """π_F answers x itself: the floor of the comparison."""

    def run(self, job: Job) -> Arm:
        return Arm(job.cfg.method.name, None, job.frozen)


class BasePrompter(Method):
    """The prompter before RL (ρ_ref; with ``sft=instructions``, ρ_sft) rewrites x, π_F answers x′ (D2)."""

    def run(self, job: Job) -> Arm:
        from alignpro.methods.sft import reference_prompter
        from alignpro.models.generation import GenerationEngine
        from alignpro.models.prompter import load_prompter

        rho_ref = reference_prompter(job)
        engine = GenerationEngine.from_config(job.cfg.generation)
        return Arm(job.cfg.method.name, load_prompter(job.cfg.prompter, path=rho_ref, device=job.device, engine=engine),
                   job.frozen)


class TrainedPrompter(Method):
    """A prompter another run trained (``method.from_run``) rewrites x with that run's settings; this config's π_F
    answers x′ and this config's reward scores it: the same prompter on other prompts, models or rewards."""

    def run(self, job: Job) -> Arm:
        from alignpro.models.trained import load_trained

        trained = load_trained(job.cfg.method.from_run)
        facts = {"from_run": str(trained.run_dir), "trained_on": {k: trained.cfg[k].name for k in
                                                                 ("dataset", "frozen", "reward")}}
        return Arm(job.cfg.method.name, trained.load(job.device), job.frozen, facts=facts)
