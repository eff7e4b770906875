"""The four arms of the paper's comparison (D2, D7 in docs/decisions.md), one small class each, in one registry.

| method        | trains            | loads π_F | at evaluation, x is answered by           | file                 |
|---------------|-------------------|-----------|-------------------------------------------|----------------------|
| no_finetune   | nothing           | yes       | π_F(x)                                    | here                 |
| base_prompter | nothing           | yes       | π_F(x′), x′ ~ ρ_ref(·|x) (untrained)      | here                 |
| alignpro      | the prompter ρ    | yes       | π_F(x′), x′ ~ ρ(·|x)   (eq. 9)            | methods/alignpro.py  |
| rlhf (oracle) | the frozen model  | no        | π*(x), same trainer, reward and prompts   | methods/oracle.py    |

:data:`METHODS` is the one place that knows the arms: the pipeline (:mod:`alignpro.train`), the validator and the
reports read it. This module imports no torch; an arm's training code is imported when the arm runs.

A new arm: a class here with its ``name``, ``label``, ``trains`` and ``needs_frozen``, a ``run`` returning the
:class:`Arm` to evaluate, an entry in :data:`METHODS`, and ``conf/method/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from alignpro.config.schema import Config
from alignpro.run.directory import RunDir
from alignpro.run.timing import StageTimer

if TYPE_CHECKING:
    from alignpro.models.frozen import Responder
    from alignpro.models.prompter import Prompter
    from alignpro.models.reward import Reward
    from alignpro.run.tracking import Tracker


@dataclass
class Arm:
    """What answers an evaluation prompt: an optional prompter in front of a responder."""

    name: str
    prompter: Prompter | None
    responder: Responder


@dataclass
class Job:
    """What an arm gets to run: the composed config, the train prompts, r(x, y), π_F (None for the oracle), the
    run's directory and device, the W&B run's tracker (None: no W&B), the stage timer and any extra callbacks."""

    cfg: Config  # typed and checked (alignpro.config.validate.validate)
    train_records: list[dict]
    reward: Reward
    frozen: Responder | None
    run_dir: RunDir
    device: str = "cpu"
    tracker: Tracker | None = None
    timer: StageTimer = field(default_factory=StageTimer)
    callbacks: tuple = ()  # more TRL callbacks for a trained arm's trainer (e.g. benchmarks/gpu's step clock)

    def __post_init__(self) -> None:
        if not isinstance(self.run_dir, RunDir):
            self.run_dir = RunDir(Path(self.run_dir))

    @property
    def log(self) -> Callable[[dict], None] | None:
        """Where a stage sends metric dicts (W&B), or None."""
        return self.tracker.log if self.tracker is not None else None


class Method:
    """One arm. ``trains``: the config group of the model it fine-tunes (None: it trains nothing);
    ``needs_frozen``: the pipeline loads π_F for it; ``uses_prompter``: it loads a prompter."""

    name: ClassVar[str]
    label: ClassVar[str]  # how the paper-style report names it
    description: ClassVar[str]  # how the comparison table names it: the arm and what answers x
    trains: ClassVar[str | None] = None
    needs_frozen: ClassVar[bool] = True
    uses_prompter: ClassVar[bool] = False

    def run(self, job: Job) -> Arm:
        raise NotImplementedError


class NoFinetune(Method):
    """π_F answers x itself: the floor of the comparison."""

    name, label, description = "no_finetune", "No fine-tuning", "no fine-tuning (π_F answers x)"

    def run(self, job: Job) -> Arm:
        return Arm(self.name, None, job.frozen)


class BasePrompter(Method):
    """The prompter before RL (ρ_ref; with ``sft=instructions``, ρ_sft) rewrites x, π_F answers x′ (D2)."""

    name, label, description = "base_prompter", "Base prompter (D2)", "base prompter (ρ_ref, before RL)"
    uses_prompter = True

    def run(self, job: Job) -> Arm:
        from alignpro.methods.sft import reference_prompter
        from alignpro.models.generation import GenerationEngine
        from alignpro.models.prompter import load_prompter

        rho_ref = reference_prompter(job)
        engine = GenerationEngine.from_config(job.cfg.generation)
        return Arm(self.name, load_prompter(job.cfg.prompter, path=rho_ref, device=job.device, engine=engine),
                   job.frozen)


class AlignPro(Method):
    """Eq. 9: fine-tune the prompter against r(x, π_F(x′)) with a KL leash to ρ_ref (alignpro/methods/alignpro.py)."""

    name, label, description = "alignpro", "Align-Pro", "Align-Pro (trained ρ)"
    trains, uses_prompter = "prompter", True

    def run(self, job: Job) -> Arm:
        from alignpro.methods.alignpro import train_prompter

        return train_prompter(job)


class RLHFOracle(Method):
    """The frozen model itself RL-fine-tuned, same trainer, reward and prompts (D7; alignpro/methods/oracle.py)."""

    name, label, description = "rlhf", "Oracle (RLHF)", "RLHF oracle (π_F trained)"
    trains, needs_frozen = "frozen", False

    def run(self, job: Job) -> Arm:
        from alignpro.methods.oracle import train_oracle

        return train_oracle(job)


# In the reports' order: the floor, the untrained prompter, the method, the ceiling.
METHODS: dict[str, Method] = {m.name: m for m in (NoFinetune(), BasePrompter(), AlignPro(), RLHFOracle())}


def run_method(job: Job) -> Arm:
    """Factory for the ``method`` group: train what the method trains, return the arm to evaluate."""
    return METHODS[job.cfg.method.name].run(job)
