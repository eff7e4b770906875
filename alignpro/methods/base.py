"""What every arm shares: the :class:`Job` it is given, the :class:`Arm` it returns for evaluation, and the
:class:`Method` base class. An arm is one subclass and one ``conf/method/<name>.yaml`` naming it (``_target_``) with
its facts (what it trains, whether it loads a prompter or π_F, its labels); alignpro/config/arms.py reads those
without importing the arm, so the validator, the sweep preflight and the reports stay torch-free.

| method        | trains            | loads π_F | at evaluation, x is answered by           | file                 |
|---------------|-------------------|-----------|-------------------------------------------|----------------------|
| no_finetune   | nothing           | yes       | π_F(x)                                    | methods/baselines.py |
| base_prompter | nothing           | yes       | π_F(x′), x′ ~ ρ_ref(·|x) (untrained)      | methods/baselines.py |
| alignpro      | the prompter ρ    | yes       | π_F(x′), x′ ~ ρ(·|x)   (eq. 9)            | methods/alignpro.py  |
| rlhf (oracle) | the frozen model  | no        | π*(x), same trainer, reward and prompts   | methods/oracle.py    |
| fixed_instruction | nothing (picks) | yes     | π_F(x + d*), d* the menu's best on train  | methods/selection.py |
| best_of_n     | nothing           | yes       | the best r(x, y) of N: x′ ~ ρ_ref, y ~ π_F | methods/selection.py |
| trained       | nothing           | yes       | π_F(x′), x′ ~ another run's trained ρ      | methods/baselines.py |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    """What answers an evaluation prompt: an optional prompter in front of a responder, and what the arm wants
    ``metrics.json`` to say about how it was made (``facts``: e.g. the instruction ``fixed_instruction`` chose).
    ``roll_out``, if set, replaces the evaluation's x → x′ → y chain: (xs, reward, answer sampling, rewrite sampling)
    → a Rollout (``best_of_n`` answers N rewrites per x and keeps the best)."""

    name: str
    prompter: Prompter | None
    responder: Responder
    facts: dict = field(default_factory=dict)
    roll_out: Callable[..., Any] | None = None


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
    """One arm: ``run`` trains what the arm trains (``job.cfg.method.trains``) and returns the arm to evaluate."""

    def run(self, job: Job) -> Arm:
        raise NotImplementedError
