"""The typed config schema: one dataclass per config group, with each key's type, default, choices and range.

Each group's YAML files (``conf/<group>/``) fill one dataclass; a key's rule sits in its field, a rule over several
of a group's keys in the group's ``rules``. :mod:`alignpro.config.rules` types a composed config by :class:`Config`
and checks those rules; :mod:`alignpro.config.validate` adds the ones that span groups. Torch-free, so a bad value is
refused before any model stack loads.

| group        | dataclass          | module that uses it        |
|--------------|--------------------|----------------------------|
| (top level)  | Config             | alignpro/train.py          |
| prompter (+ meta_prompt) | PrompterConfig | alignpro/models/prompter.py |
| frozen       | FrozenConfig       | alignpro/models/frozen.py (API keys: alignpro/models/api.py) |
| reward       | RewardConfig       | alignpro/models/reward.py         |
| dataset      | DatasetConfig      | alignpro/data/preferences.py (its adapter options are checked there) |
| method       | MethodConfig       | alignpro/methods/ (the registry ``METHODS``) |
| trainer      | TrainerConfig      | alignpro/methods/rl/             |
| sft          | SFTConfig          | alignpro/methods/sft.py            |
| logger       | LoggerConfig       | alignpro/run/tracking.py       |
| judge        | JudgeConfig        | alignpro/report/judge.py          |
| generation   | GenerationConfig   | alignpro/models/generation.py     |
| eval         | EvalConfig         | alignpro/report/evaluate.py       |
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from alignpro.config.rules import above_zero, integer_at_least, key, non_negative, number_above, positive, require

DEVICES = ("auto", "cpu", "cuda")
TRAINERS = ("rloo", "grpo")
VLLM_MODES = ("colocate", "server")  # TRL: vLLM inside the training process, or a separate `trl vllm-serve`
PAPER_BUDGET = "paper"  # trainer.max_steps: the paper's implied budget (alignpro.methods.rl.resolve_max_steps)
PROMPT_SAMPLES = ("first", "seeded")  # eval.prompt_sample: the held-out split's first n prompts, or a seeded draw
RESUME_MODES = ("auto", "never")  # continue a run dir's newest complete checkpoint, or refuse a used run dir
# What a job returns to a sweeper (Optuna maximises it): the held-out mean reward, or eq. 9's objective on the train
# prompts (mean over the last quarter of the steps), which leaves the held-out prompts unseen by the search.
SWEEP_OBJECTIVES = ("heldout_reward", "train_objective")
PLACEHOLDER = "[PROMPT]"  # where the meta-prompt puts the user prompt x
REWRITES = ("full", "append")  # x′ is the prompter's output, or x followed by it
FROZEN_BACKENDS = ("hf", "openai_api")
CPU_WEIGHTS = ("fp32", "fp16")
JUDGE_BACKENDS = ("openai_api", "hf")
REWARD_KINDS = ("bt_encoder", "hf_classifier")  # alignpro/models/reward_bt.py, alignpro/models/reward_hf.py
REWARD_PROMPTS = ("original", "rewritten")  # r(x, y) (eq. 9, D5) or r(x′, y) (ablation)
ENGINES = ("hf", "compiled")
COMPILE = ("auto", True, False)
LOGGER_BACKENDS = ("wandb", "none")
EXTRA_SAMPLING = ("top_k", "generation_config", "none")  # how an API model gets top_k (alignpro/models/api.py)
SCORE_LINE_MAX_TOKENS = len("10 10\n")  # the judge's longest score line; every allowed token adds ≥ 1 character
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # an environment variable's name
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")  # a class by its module path
TRAINED = ("prompter", "frozen")  # what an arm may fine-tune (method.trains)


@dataclass
class SamplingConfig:
    """How one model samples (temperature / top_p / top_k, the warpers of ``model.generate``)."""
    temperature: float = key(ok=lambda v: v >= 0, valid="must be ≥ 0 (0 = greedy)")
    top_p: float = key(1.0, ok=lambda v: 0 < v <= 1, valid="must be in (0, 1]")
    top_k: int = key(0, ok=lambda v: v >= 0, valid="must be an integer ≥ 0 (0 = off)")


@dataclass
class APIEndpoint:
    """An OpenAI-compatible chat endpoint (``conf/frozen/openai_api.yaml``, ``conf/judge/openai_api.yaml``): its
    rules (:func:`alignpro.config.endpoint.endpoint_rules`) apply when the backend is the API; a local one sets none."""
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None  # the NAME of the variable holding the key, never the key
    max_concurrency: int | None = None
    timeout_s: float | None = None
    max_retries: int | None = None
    backoff_s: float | None = None
    extra_sampling: str = "top_k"  # how top_k reaches the server: one of EXTRA_SAMPLING


@dataclass
class PrompterConfig:
    """The prompter ρ (``conf/prompter/``) and its meta-prompt (``conf/meta_prompt/``, packaged into this group)."""
    name: str = MISSING
    source: str = MISSING  # where the weights come from (alignpro/models/assets.py)
    model_id: str | None = None
    dtype: str = "auto"
    system: str | None = None
    max_new_tokens: int = positive()
    batch_size: int = positive()
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    lora: Any = None  # null = full fine-tuning, or LoRA options (checked by lora_options when trained)
    meta_prompt_name: str | None = None
    meta_prompt: str = key(ok=lambda v: PLACEHOLDER in v,
                           valid=f"must contain the placeholder {PLACEHOLDER} where the user prompt goes")
    rewrite: str = key("full", choices=REWRITES, valid=f"valid: {', '.join(REWRITES)} (set by meta_prompt=...)")


@dataclass
class FrozenConfig(APIEndpoint):
    """The frozen model π_F (``conf/frozen/``): local weights (backend hf) or an API (backend openai_api)."""
    name: str = MISSING
    backend: str = key(choices=FROZEN_BACKENDS)
    source: str | None = None
    model_id: str | None = None
    dtype: str = "auto"
    cpu_weights: str = key("fp32", choices=CPU_WEIGHTS)  # hf backend on CPU, fp32 dtype: fp16 = FP16WeightLinear
    system: str | None = None
    max_new_tokens: int = positive()
    batch_size: int = positive()
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    lora: Any = None  # used only when the oracle trains the frozen model


@dataclass
class BTFitConfig:
    """How the Bradley-Terry head of ``reward.kind=bt_encoder`` is trained (alignpro/models/reward_bt.py)."""
    hidden: int = positive()
    epochs: int = positive()
    lr: float = above_zero()
    weight_decay: float = key(ok=lambda v: number_above(v, 0, strict=False), valid="must be a number ≥ 0")
    offtopic_pairs: bool = True
    seed: int = 0


@dataclass
class RewardConfig:
    """The reward r(x, y) (``conf/reward/``)."""
    name: str = MISSING
    kind: str = key(choices=REWARD_KINDS)
    source: str = MISSING
    model_id: str | None = None  # ??? in hf_classifier.yaml: the user names the model (see ``rules``)
    max_length: int = positive()
    prompt: str = key("original", choices=REWARD_PROMPTS)
    dtype: str = "auto"
    batch_size: int | None = positive(None)
    fallback_chat_template: str | None = None
    fit: BTFitConfig | None = None
    # bt_encoder: the dataset whose train pairs fit r (a dataset group's block); null = the run's own dataset. Set,
    # it scores other prompts with a world's reward: alignpro.evaluate sets the training run's here.
    fit_dataset: DatasetConfig | None = None

    @staticmethod
    def rules(node: DictConfig, prefix: str) -> None:
        if node.kind == "hf_classifier":
            given = not OmegaConf.is_missing(node, "model_id") and bool(node.model_id)
            require(given, f"{prefix}model_id", node.model_id if given else "???",
                    f"reward={node.name} needs the reward model: reward.model_id=<hub id or local folder>")


@dataclass
class DatasetConfig:
    """Prompts and preference pairs (``conf/dataset/``). null = the adapter's default; the adapter-specific options
    (adapter, source, ties, rank_by, ...) are checked by :func:`alignpro.data.preferences.check_options`."""
    name: str = MISSING
    source: str = MISSING
    adapter: str = MISSING
    prompt_field: str = MISSING
    hub_id: str | None = None
    path: str | None = None
    asset: str | None = None
    train_split: str | None = None
    heldout_split: str | None = None
    heldout: Any = None  # a fraction < 1 or a count of rows
    split_seed: int = 0
    rank_by: list[str] | None = None
    ties: str | None = None
    card_filter: bool | None = None
    dedup: bool | None = None
    system: str | None = None
    chosen_field: str | None = None
    rejected_field: str | None = None
    id_field: str | None = None
    min_prompt_chars: int | None = None
    max_prompt_chars: int | None = None
    max_response_chars: int | None = None
    max_train: int | None = None


@dataclass
class MethodConfig:
    """The arm (``conf/method/<name>.yaml``): the class that runs it and the facts the pipeline, the validator, the
    sweep preflight and the reports read without importing it (alignpro/config/arms.py)."""
    name: str = MISSING
    _target_: str = key(ok=lambda v: isinstance(v, str) and bool(DOTTED.match(v)),
                        valid="the dotted path of the arm's class, e.g. alignpro.methods.alignpro.AlignPro")
    label: str = MISSING  # how the paper-style report names the arm
    description: str = MISSING  # how the comparison table names it: the arm and what answers x
    trains: str | None = key(None, choices=(None, *TRAINED))  # the config group of the model it fine-tunes
    uses_prompter: bool = False  # the pipeline loads a prompter for it
    needs_frozen: bool = True  # the pipeline loads the frozen model π_F for it
    reads_menu: bool = False  # it picks from sft.instructions without a prompter (fixed_instruction)
    select_prompts: int | None = key(None, ok=lambda v: v is None or integer_at_least(v, 1),
                                     valid="at least 1 train prompt to score each instruction on, or null for "
                                           "every train prompt")
    n_rewrites: int | None = key(None, ok=lambda v: v is None or integer_at_least(v, 2),
                                 valid="at least 2 rewrites per held-out prompt to choose from (null: an arm that "
                                       "chooses none)")
    from_run: str | None = None  # method=trained: a trained prompter's run dir or prompter/ folder
    needs: list[str] = field(default_factory=list)  # method keys the arm cannot run without (set, not null)


@dataclass
class TrainerConfig:
    """The RL trainer (``conf/trainer/``): TRL's RLOO or GRPO."""
    name: str = key(choices=TRAINERS)
    num_generations: int = key(ok=lambda v: integer_at_least(v, 2),
                               valid="RLOO/GRPO need k ≥ 2 rewrites per prompt (leave-one-out baseline)")
    prompts_per_step: int = positive()
    # Optimizer steps, or `paper`: the paper's budget, as many rollouts as train prompts (resolved from the data by
    # alignpro.methods.rl.resolve_max_steps before anything loads; config.yaml holds the number)
    max_steps: Any = key(ok=lambda v: v == PAPER_BUDGET or integer_at_least(v, 1),
                         valid=f"must be an integer > 0, or {PAPER_BUDGET} (the paper's budget: one rollout per "
                               "train prompt)")
    num_iterations: int = positive(1)  # updates per generated batch (TRL's μ; legacy PPO's ppo_epochs)
    micro_batches: int = positive(1)  # passes one update's batch is split into (gradient accumulation): memory only
    learning_rate: float = key(ok=lambda v: number_above(v, 0), valid="must be > 0")
    lr_scheduler_type: str = "constant"
    warmup_steps: int = non_negative(0)
    bf16: bool = True
    gradient_checkpointing: bool = False
    save_steps: int = non_negative(25)  # 0 = no checkpoints: a killed job starts over
    save_total_limit: int = positive(1)
    keep_checkpoints: bool = False  # a finished job deletes its checkpoints unless true
    loss_type: str = "dr_grpo"  # GRPO only
    use_vllm: bool = False  # TRL's rollouts through vLLM (a GPU with vllm installed)
    vllm_mode: str = key("colocate", choices=VLLM_MODES)
    vllm_server_base_url: str | None = None  # vllm_mode=server: the `trl vllm-serve` URL
    vllm_gpu_memory_utilization: float = key(0.3, ok=lambda v: number_above(v, 0) and v <= 1,
                                             valid="must be in (0, 1]")
    extra: dict[str, Any] = field(default_factory=dict)  # passed verbatim to the TRL config

    @staticmethod
    def rules(node: DictConfig, prefix: str) -> None:
        batch = node.prompts_per_step * node.num_generations
        require(batch % node.micro_batches == 0, f"{prefix}micro_batches", node.micro_batches,
                f"must divide the batch, prompts_per_step x num_generations = {batch} rollouts")


@dataclass
class SFTConfig:
    """The optional supervised stage giving ρ_sft (``conf/sft/``)."""
    name: str = "none"
    enabled: bool = False
    instructions: list[str] | None = None
    n_examples: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    seed: int = 0

    @staticmethod
    def rules(node: DictConfig, prefix: str) -> None:
        if not node.enabled:
            return
        menu = node.instructions
        require(bool(menu) and all(isinstance(i, str) and i.strip() for i in menu), f"{prefix}instructions",
                None if menu is None else list(menu), "must be a non-empty list of non-empty instructions")
        for name in ("n_examples", "epochs", "batch_size"):
            require(integer_at_least(node[name], 1), f"{prefix}{name}", node[name], "must be an integer > 0")
        require(number_above(node.learning_rate, 0), f"{prefix}learning_rate", node.learning_rate,
                "must be a number > 0")


@dataclass
class LoggerConfig:
    """Where metrics go (``conf/logger/``): W&B or nowhere."""
    backend: str = key(choices=LOGGER_BACKENDS)
    project: str = "alignpro"
    entity: str | None = None
    mode: str | None = key(None, choices=(None, "online", "offline", "disabled"),
                              valid="null (auto), online, offline or disabled")
    group: str | None = None
    tags: list[str] = key([])


@dataclass
class JudgeConfig(APIEndpoint):
    """The LLM judge (``conf/judge/``, composed with ``+judge=...``)."""
    name: str = MISSING
    backend: str = key(choices=JUDGE_BACKENDS)
    source: str | None = None
    model_id: str | None = None
    dtype: str = "auto"
    batch_size: int | None = None
    max_new_tokens: int = positive()
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_attempts: int = positive()
    retry_temperature: float = above_zero()
    n_prompts: int = positive()
    cache: bool = True
    constrain_scores: bool = False

    @staticmethod
    def rules(node: DictConfig, prefix: str) -> None:
        constrain, backend = node.constrain_scores, node.backend
        # refused, not ignored: an API backend returns free text, so the verdicts would silently be unconstrained
        require(not constrain or backend == "hf", f"{prefix}constrain_scores", constrain,
                f"needs backend: hf (a local model); backend '{backend}' returns free text: set it to false")
        require(not constrain or node.max_new_tokens >= SCORE_LINE_MAX_TOKENS, f"{prefix}max_new_tokens",
                node.max_new_tokens,
                f"too small for judge.constrain_scores=true: a score line takes up to {SCORE_LINE_MAX_TOKENS} tokens")
        if backend == "hf":
            require(integer_at_least(node.batch_size, 1), f"{prefix}batch_size", node.batch_size,
                    "must be an integer > 0")


@dataclass
class GenerationConfig:
    """The generation engine of answers and evaluation rewrites (alignpro/models/generation.py)."""
    engine: str = key("hf", choices=ENGINES)
    compile: Any = key("auto", choices=COMPILE, valid="auto, true or false")
    bucket: bool = True


@dataclass
class EvalConfig:
    """The held-out evaluation, identical for every method (alignpro/report/evaluate.py)."""
    n_prompts: int = positive()
    samples_per_prompt: int = positive(1)
    max_new_tokens: int | None = positive(None)  # null = frozen.max_new_tokens
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    rewrite_sampling: SamplingConfig | None = None  # null = sampling
    bootstrap_resamples: int = positive(2000)
    answer_shift: bool = True
    prompt_sample: str = key("first", choices=PROMPT_SAMPLES)  # which held-out prompts: the first n or a seeded draw
    sample_seed: int = 0  # the draw's seed (never the run's: every arm and seed answers the same prompts)


@dataclass
class Config:
    """A whole run: ``conf/train.yaml`` and its groups."""
    lam: float = key(ok=lambda v: number_above(v, 0),
                     valid="the paper's λ (KL weight of eq. 9) must be a finite number > 0; try lam=0.2")
    seed: int = key(0, valid="must be an integer")
    device: str = key("auto", choices=DEVICES)
    resume: str = key("auto", choices=RESUME_MODES)
    sweep_objective: str = key("heldout_reward", choices=SWEEP_OBJECTIVES)
    method: MethodConfig = field(default_factory=MethodConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    prompter: PrompterConfig = field(default_factory=PrompterConfig)
    frozen: FrozenConfig = field(default_factory=FrozenConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    judge: JudgeConfig | None = None  # only with +judge=...
