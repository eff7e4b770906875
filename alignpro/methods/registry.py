"""The arms by name, and the factory of the ``method`` group.

:data:`METHODS` holds each shipped arm's facts (``conf/method/*.yaml``, typed by
:class:`alignpro.config.schema.MethodConfig`) in the reports' order; :func:`build_method` makes the arm a config
names through its ``_target_``, so a new arm is one class and one YAML, with no edit here or in ``train.py``.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import get_class

from alignpro.config.arms import arms
from alignpro.methods.base import Arm, Job, Method

METHODS = arms()


def build_method(method_cfg: Any) -> Method:
    """Factory for the ``method`` group: the arm's class (``method._target_``), instantiated."""
    cls = get_class(method_cfg._target_)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"method._target_={method_cfg._target_} is not a subclass of alignpro.methods.base.Method")
    return cls()


def run_method(job: Job) -> Arm:
    """Train what the job's arm trains and return the arm to evaluate."""
    return build_method(job.cfg.method).run(job)
