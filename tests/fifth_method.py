"""A fifth arm, to show that adding a method is one class and one YAML (tests/conf/method/fixed_instruction.yaml,
found through Hydra's search path): x′ = x followed by a fixed instruction, answered by π_F; nothing is trained."""

from __future__ import annotations

from alignpro.methods.base import Arm, Job, Method
from alignpro.models.prompter import compose_rewrite

INSTRUCTION = "Answer in one sentence."


class FixedRewrite:
    """What evaluation asks of an arm's prompter (alignpro/report/evaluate.py): x′ for each x."""

    def rewrite(self, prompts: list[str], sampling=None, desc: str | None = None) -> list[str]:
        return [compose_rewrite(x, INSTRUCTION, "append") for x in prompts]


class FixedInstruction(Method):
    """x + a fixed instruction in front of π_F."""

    def run(self, job: Job) -> Arm:
        return Arm(job.cfg.method.name, FixedRewrite(), job.frozen)
