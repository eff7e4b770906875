"""The one place alignpro touches TRL's private trainer attributes.

TRL 1.16's RLOO and GRPO trainers have no public hook for what alignpro needs (checking every per-token log-prob,
cutting prompts to the context, logging a metric of its own, timing the rollouts, reloading a finished run's
weights), so alignpro wraps or calls private methods. A private name can change in any TRL release; with every use
here and listed in :data:`PRIVATE_TRL_ATTRIBUTES`, :func:`check_trl_internals` refuses a TRL that lacks one when a
trainer is built, with the TRL version and the missing names, instead of an AttributeError mid-run.

Nothing here imports TRL, transformers or torch at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TRAINER_CLASSES = ("RLOOTrainer", "GRPOTrainer")

# (TRL trainer class, private attribute) for every private attribute used below. ``_load_from_checkpoint`` is
# transformers.Trainer's, inherited by both.
PRIVATE_TRL_ATTRIBUTES: tuple[tuple[str, str], ...] = tuple(
    (cls, attr) for cls in TRAINER_CLASSES
    for attr in ("_get_per_token_logps_and_entropies", "_tokenize_prompts", "_log_metric", "_generate",
                 "_load_from_checkpoint"))


def check_trl_internals() -> None:
    """Raise a RuntimeError naming the installed TRL version and every (class, attribute) of
    :data:`PRIVATE_TRL_ATTRIBUTES` its trainer classes lack. Cheap: ``hasattr`` on the classes."""
    import trl

    missing = [f"trl.{cls}.{attr}" for cls, attr in PRIVATE_TRL_ATTRIBUTES if not hasattr(getattr(trl, cls), attr)]
    if missing:
        raise RuntimeError(f"the installed TRL {trl.__version__} lacks {', '.join(missing)}, which alignpro wraps "
                           "(alignpro/methods/rl/trl_internals.py); install the TRL version pyproject.toml pins")


def wrap_log_probs(trainer: Any, wrap: Callable[[Callable], Callable]) -> None:
    """Replace the trainer's per-token log-prob pass (``_get_per_token_logps_and_entropies``: every scoring pass and
    the loss pass go through it) by ``wrap(original)``."""
    trainer._get_per_token_logps_and_entropies = wrap(trainer._get_per_token_logps_and_entropies)


def wrap_prompt_tokenizer(trainer: Any, wrap: Callable[[Callable], Callable]) -> None:
    """Replace the trainer's prompt tokenizer (``_tokenize_prompts``: ``prompts → (prompt_ids, images,
    multimodal)``, whose ids feed the rollout and every log-prob pass) by ``wrap(original)``."""
    trainer._tokenize_prompts = wrap(trainer._tokenize_prompts)


def wrap_generate(trainer: Any, wrap: Callable[[Callable], Callable]) -> None:
    """Replace the trainer's rollout generation (``_generate``, the policy's own sampling) by ``wrap(original)``."""
    trainer._generate = wrap(trainer._generate)


def log_metric(trainer: Any, name: str, value: float) -> None:
    """Add ``value`` to the logged ``name``: averaged over the logging step, reported beside TRL's own metrics."""
    trainer._log_metric(name, value)


def load_checkpoint(trainer: Any, path: str) -> None:
    """Load a checkpoint's model weights into the trainer without training (transformers'
    ``Trainer._load_from_checkpoint``)."""
    trainer._load_from_checkpoint(path)
