"""The arms a run can be, read from ``conf/method/*.yaml`` without importing any arm's code.

An arm is one class and one YAML (``conf/method/<name>.yaml``): the YAML names the class (``_target_``) and states
what the validator, the sweep preflight and the reports need to know about it (what it trains, whether it loads a
prompter or π_F, how tables name it). So those layers stay torch-free and below the methods that import torch.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from omegaconf import OmegaConf

from alignpro import CONF_DIR
from alignpro.config.rules import check, typed
from alignpro.config.schema import MethodConfig

# The reports' column order: the floor, the best static prompt, the untrained prompter and its best of N, the
# method, the ceiling; other arms after them.
REPORT_ORDER = ("no_finetune", "fixed_instruction", "base_prompter", "best_of_n", "alignpro", "rlhf")


def read_arm(path: Path) -> MethodConfig:
    """One ``conf/method`` YAML, typed and checked by :class:`MethodConfig`."""
    node = typed(OmegaConf.load(path), MethodConfig, "method.")
    check(node, MethodConfig, "method.")
    return node


@cache
def arms() -> dict[str, MethodConfig]:
    """The shipped arms by name, in the reports' order."""
    found = {a.name: a for a in map(read_arm, sorted((Path(CONF_DIR) / "method").glob("*.yaml")))}
    first = [n for n in REPORT_ORDER if n in found]
    return {n: found[n] for n in first + sorted(set(found) - set(first))}
