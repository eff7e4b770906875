"""An arm from outside the package, to show that adding a method is one class and one YAML
(tests/conf/method/constant_suffix.yaml, found through Hydra's search path): x′ = x followed by a constant suffix,
answered by π_F; nothing is trained."""

from __future__ import annotations

from alignpro.methods.base import Arm, Job, Method
from alignpro.models.prompter import compose_rewrite

INSTRUCTION = "Answer in one sentence."


class FixedRewrite:
    """What evaluation asks of an arm's prompter (alignpro/report/evaluate.py): x′ for each x."""

    def rewrite(self, prompts: list[str], sampling=None, desc: str | None = None) -> list[str]:
        return [compose_rewrite(x, INSTRUCTION, "append") for x in prompts]


class ConstantSuffix(Method):
    """x + a constant suffix in front of π_F."""

    def run(self, job: Job) -> Arm:
        return Arm(job.cfg.method.name, FixedRewrite(), job.frozen)
