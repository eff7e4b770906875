"""GPU-hours: decode steps × the eager ``generate()`` time per decode step measured on an H100 (docs/gpu-anchors.md:
launch-bound, ≈ 3.1 ms per layer and step, measured up to batch 64 and taken as the same for larger batches), plus
forward/backward time scaled from the measured training step by parameters × tokens. Every generation runs its full
``max_new_tokens`` (no early stop): an upper bound, and an estimate until benchmarks/gpu has run. Also here: the
updates and generation rounds a job trains for, and how TRL splits them into passes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from alignpro.run.errors import BadInput

if TYPE_CHECKING:
    from alignpro.tools.plan.shapes import Shape

# docs/gpu-anchors.md (one H100 80GB, TRL's default eager generate() path, batch 64): ms per decode step and layers.
# Eager decoding is bound by kernel launches, so a step costs about the same per layer whatever the width or batch.
DECODE_ANCHORS = {"Llama-3.1-8B": (99.1, 32), "Qwen2.5-1.5B": (88.7, 28)}
MS_PER_LAYER_STEP = sum(ms / layers for ms, layers in DECODE_ANCHORS.values()) / len(DECODE_ANCHORS)
# docs/gpu-anchors.md: one training step of the Qwen2.5-1.5B shape, batch 16 x 384 tokens, AdamW, checkpointing.
TRAIN_STEP_S, TRAIN_STEP_PARAMS, TRAIN_STEP_TOKENS = 0.26, 1_543_714_304, 16 * 384
FORWARD_SHARE = 0.25  # a no-grad forward vs a checkpointed training step (forward + recompute + backward ≈ 4 forwards)
ANCHOR_GPU = "H100 80GB"

# Train prompts of the paper's datasets, for ``trainer.max_steps: paper`` (one pass over them).
PAPER_TRAIN_PROMPTS = {"ultrafeedback": 61_135, "orca": 11_859, "helpsteer": 9_000}
APPROXIMATE_TRAIN_PROMPTS = {"helpsteer": "≈ 9,000 unique prompts in 35,331 rows (up to 4 responses each)"}

ESTIMATE_NOTE = "estimate until benchmarks/gpu has run"


def micro_batches(t: Any) -> tuple[int, int, int]:
    """(rows per log-prob / loss pass, gradient accumulation steps, passes per generation) as TRL gets them:
    alignpro.methods.rl.trainer_args splits the batch into ``trainer.micro_batches`` passes, one generation per update;
    ``trainer.extra`` overrides any of them."""
    extra = dict(t.get("extra", None) or {})
    passes = int(t.get("micro_batches", None) or 1)
    rows = int(extra.get("per_device_train_batch_size", t.prompts_per_step * t.num_generations // passes))
    return (rows, int(extra.get("gradient_accumulation_steps", passes)),
            int(extra.get("steps_per_generation", None) or passes))


def trained_steps(cfg: Any) -> tuple[int, int]:
    """(optimizer updates, generation rounds): ``trainer.max_steps`` updates; TRL generates once per
    ``steps_per_generation × num_iterations`` passes (a pass is one of an update's gradient accumulation steps).
    ``max_steps: paper`` = one pass over the dataset's train prompts (:func:`alignpro.methods.rl.resolve_max_steps`,
    with
    the published train-prompt counts: no data is loaded here)."""
    t = cfg.trainer
    iterations = int(t.get("num_iterations", None) or 1)
    _, accumulate, per_generation = micro_batches(t)
    steps = t.max_steps
    if steps == "paper":
        n = PAPER_TRAIN_PROMPTS.get(cfg.dataset.name)
        if n is None:
            raise BadInput(f"trainer.max_steps=paper needs the train-prompt count of dataset={cfg.dataset.name}; "
                           f"known: {', '.join(PAPER_TRAIN_PROMPTS)}; give trainer.max_steps=<updates> instead")
        n = min(n, cfg.dataset.get("max_train", None) or n)
        from alignpro.methods.rl import resolve_max_steps

        steps = resolve_max_steps(t, n)
    return int(steps), math.ceil(int(steps) * accumulate / (per_generation * iterations))


def decode_ms(s: Shape) -> float:
    """Eager generate() time per decode step on the anchor GPU (docs/gpu-anchors.md), by layer count."""
    return MS_PER_LAYER_STEP * s.layers


def train_s(s: Shape, tokens: int) -> float:
    """A checkpointed training step over ``tokens``, scaled from the anchor by parameters x tokens."""
    return TRAIN_STEP_S * (s.params / TRAIN_STEP_PARAMS) * (tokens / TRAIN_STEP_TOKENS)


def forward_s(s: Shape, tokens: int) -> float:
    return FORWARD_SHARE * train_s(s, tokens)
