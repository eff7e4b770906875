"""``python -m alignpro.tools.plan``: every job a command would launch, each arm's memory plan from the models' real
shapes,
and a GPU-hours estimate, without loading a weight or launching anything.

    python -m alignpro.tools.plan experiment=paper/grid                  # the paper's grid: its jobs, run dirs and
    plans
    python -m alignpro.tools.plan experiment=smoke lam=0.1,0.2           # a comma list is a sweep, as with --multirun
    python -m alignpro.tools.plan experiment=paper/grid --json plan.json # the same, as JSON

The overrides are composed as ``python -m alignpro.train --multirun`` composes them and every job is validated
(torch-free) before any model is built; each model is then built at full size on the meta device, so parameters,
LoRA adapters and KV widths are counted, not computed. docs/memory-plan.md explains every number.

| module        | job                                                                                 |
|---------------|-------------------------------------------------------------------------------------|
| ``shapes``    | models on the meta device from shipped or hub configs; LoRA counted; context checks |
| ``cost``      | the GPU-hours cost model (docs/gpu-anchors.md's anchors); updates and generations   |
| ``memory``    | one job's memory plan, stage by stage, and its GPU-hours                            |
| ``jobs``      | the sweep composed, every job listed (run dir, W&B group), one plan per arm         |
| ``report``    | the tables, the JSON and docs/memory-plan.md's memory table                         |
| ``__main__``  | the command line                                                                    |

Imports run one way: shapes ← cost ← memory ← jobs ← report ← __main__.
"""

from alignpro.tools.plan.cost import (
    ANCHOR_GPU,
    DECODE_ANCHORS,
    ESTIMATE_NOTE,
    MS_PER_LAYER_STEP,
    PAPER_TRAIN_PROMPTS,
    TRAIN_STEP_S,
    decode_ms,
    forward_s,
    micro_batches,
    train_s,
    trained_steps,
)
from alignpro.tools.plan.jobs import Job, compose_master, list_jobs, plan
from alignpro.tools.plan.memory import (
    CHARS_PER_TOKEN,
    PROMPT_TOKENS,
    TEMPLATE_TOKENS,
    ArmPlan,
    Stage,
    nbytes,
    plan_arm,
    text_tokens,
)
from alignpro.tools.plan.report import (
    GB,
    README_COMMAND,
    README_END,
    README_START,
    as_json,
    gb,
    jobs_table,
    memory_table,
    readme_block,
    render,
)
from alignpro.tools.plan.shapes import PAPER_MODELS, ContextCheck, Shape, hf_config, model_shape, shipped_config_dir

__all__ = [
    "ANCHOR_GPU", "CHARS_PER_TOKEN", "DECODE_ANCHORS", "ESTIMATE_NOTE", "GB", "MS_PER_LAYER_STEP", "PAPER_MODELS",
    "PAPER_TRAIN_PROMPTS", "PROMPT_TOKENS", "README_COMMAND", "README_END", "README_START", "TEMPLATE_TOKENS",
    "TRAIN_STEP_S", "ArmPlan", "ContextCheck", "Job", "Shape", "Stage", "as_json", "compose_master", "decode_ms",
    "forward_s", "gb", "hf_config", "jobs_table", "list_jobs", "memory_table", "micro_batches", "model_shape", "nbytes",
    "plan", "plan_arm", "readme_block", "render", "shipped_config_dir", "text_tokens", "train_s", "trained_steps",
]
