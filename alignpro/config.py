"""Validation of a composed config, run before any data or model loads: one clear message per bad value.

Hydra itself rejects an unknown group option (``prompter=nope`` lists the available ones); this module checks
values: λ > 0, k ≥ 2, positive lengths and sizes, sampling ranges, known sources/kinds/names, offline assets
installed, the meta-prompt placeholder, and that no secret is passed as a config value. Models behind an
OpenAI-compatible API (``frozen=openai_api``, ``judge=openai_api``) get their endpoint settings checked here too,
by the client's own rules (URL, concurrency, timeouts, the key's variable *name*); their key itself is only looked
up when the client is built.

The valid choices come from :mod:`alignpro.schema` and the arms from :data:`alignpro.methods.METHODS`; neither
imports torch, so a bad value is reported in well under a second. The factories trust what was checked here.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from alignpro.api import ChatClient
from alignpro.assets import AssetError, check_available
from alignpro.methods import METHODS
from alignpro.schema import (
    COMPILE,
    DEVICES,
    ENGINES,
    FROZEN_BACKENDS,
    JUDGE_BACKENDS,
    LOGGER_BACKENDS,
    PLACEHOLDER,
    REWARD_KINDS,
    REWARD_PROMPTS,
    REWRITES,
    SCORE_LINE_MAX_TOKENS,
    SECRET_KEY,
    TRAINERS,
    integer_at_least,
    lora_options,
    number_above,
)


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and what is valid."""


def _require(ok: bool, key: str, value, valid: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {valid}")


def _positive_int(cfg: DictConfig, key: str) -> None:
    v = OmegaConf.select(cfg, key)
    _require(integer_at_least(v, 1), key, v, "must be an integer > 0")


def _sampling(cfg: DictConfig, key: str) -> None:
    s = OmegaConf.select(cfg, key)
    if s is None:
        return
    _require(isinstance(s.temperature, (int, float)) and s.temperature >= 0, f"{key}.temperature", s.temperature,
             "must be ≥ 0 (0 = greedy)")
    _require(isinstance(s.top_p, (int, float)) and 0 < s.top_p <= 1, f"{key}.top_p", s.top_p, "must be in (0, 1]")
    _require(isinstance(s.top_k, int) and s.top_k >= 0, f"{key}.top_k", s.top_k, "must be an integer ≥ 0 (0 = off)")


def _no_secrets(node, path: str = "") -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}.{k}" if path else str(k)
            if SECRET_KEY.search(str(k)) and isinstance(v, str) and v and not v.startswith("${"):
                raise ConfigError(f"{here} holds a secret in the config; secrets are read from the environment "
                                  f"only. Unset it and export the variable instead (e.g. WANDB_API_KEY).")
            _no_secrets(v, here)


def _number(cfg: DictConfig, key: str, low: float, strict: bool = True) -> None:
    v = OmegaConf.select(cfg, key)
    _require(number_above(v, low, strict), key, v, f"must be a number {'>' if strict else '≥'} {low:g}")


def _api_endpoint(cfg: DictConfig, group: str) -> None:
    """The keys of an OpenAI-compatible endpoint under ``group``, by the client's own rules (alignpro/api.py)."""
    try:
        ChatClient.from_config(cfg[group])
    except ValueError as err:
        raise ConfigError(f"{group}.{err}") from None


def validate_judge(cfg: DictConfig) -> None:
    """Check a config holding a ``judge`` group (``+judge=...``, conf/judge/); run by :func:`validate` too."""
    j = cfg.judge
    _require(j.backend in JUDGE_BACKENDS, "judge.backend", j.backend, f"valid: {', '.join(JUDGE_BACKENDS)}")
    for key in ("judge.max_new_tokens", "judge.max_attempts", "judge.n_prompts"):
        _positive_int(cfg, key)
    _sampling(cfg, "judge.sampling")
    _number(cfg, "judge.retry_temperature", 0)
    constrain = j.get("constrain_scores", False)
    _require(isinstance(constrain, bool), "judge.constrain_scores", constrain, "must be true or false")
    # refused, not ignored: an API backend returns free text, so the verdicts would silently be unconstrained
    _require(not constrain or j.backend == "hf", "judge.constrain_scores", constrain,
             f"needs backend: hf (a local model); backend '{j.backend}' returns free text: set it to false")
    _require(not constrain or j.max_new_tokens >= SCORE_LINE_MAX_TOKENS, "judge.max_new_tokens", j.max_new_tokens,
             f"too small for judge.constrain_scores=true: a score line takes up to {SCORE_LINE_MAX_TOKENS} tokens")
    if j.backend == "openai_api":
        _api_endpoint(cfg, "judge")
    else:
        _positive_int(cfg, "judge.batch_size")
        try:
            check_available(j.source, role="judge")
        except AssetError as err:
            raise ConfigError(f"judge={j.name}: {err}") from err


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` (or :class:`AssetError`) on the first invalid value."""
    lam = cfg.lam
    _require(number_above(lam, 0), "lam", lam,
             "the paper's λ (KL weight of eq. 9) must be a finite number > 0; try lam=0.2")
    _require(isinstance(cfg.seed, int), "seed", cfg.seed, "must be an integer")
    _require(cfg.device in DEVICES, "device", cfg.device, f"valid: {', '.join(DEVICES)}")
    m = cfg.method.name
    _require(m in METHODS, "method.name", m, f"valid: {', '.join(METHODS)}")
    _require(cfg.trainer.name in TRAINERS, "trainer.name", cfg.trainer.name, f"valid: {', '.join(TRAINERS)}")
    _require(cfg.reward.kind in REWARD_KINDS, "reward.kind", cfg.reward.kind, f"valid: {', '.join(REWARD_KINDS)}")
    _require(cfg.reward.prompt in REWARD_PROMPTS, "reward.prompt", cfg.reward.prompt,
             f"valid: {', '.join(REWARD_PROMPTS)}")
    _require(cfg.logger.backend in LOGGER_BACKENDS, "logger.backend", cfg.logger.backend,
             f"valid: {', '.join(LOGGER_BACKENDS)}")
    k = cfg.trainer.num_generations
    _require(isinstance(k, int) and k >= 2, "trainer.num_generations", k,
             "RLOO/GRPO need k ≥ 2 rewrites per prompt (leave-one-out baseline)")
    for key in ("trainer.prompts_per_step", "trainer.max_steps", "prompter.max_new_tokens", "prompter.batch_size",
                "frozen.max_new_tokens", "frozen.batch_size", "reward.max_length", "eval.n_prompts",
                "eval.samples_per_prompt", "eval.bootstrap_resamples"):
        _positive_int(cfg, key)
    if cfg.eval.max_new_tokens is not None:
        _positive_int(cfg, "eval.max_new_tokens")
    _require(cfg.trainer.learning_rate > 0, "trainer.learning_rate", cfg.trainer.learning_rate, "must be > 0")
    for key in ("prompter.sampling", "frozen.sampling", "eval.sampling", "eval.rewrite_sampling"):
        _sampling(cfg, key)
    policy = METHODS[m].trains
    if policy:  # the trained policy's rollouts must be sampled: RLOO/GRPO estimate gradients from samples
        t = cfg[policy].sampling.temperature
        _require(t > 0, f"{policy}.sampling.temperature", t, f"method={m} trains the {policy} from sampled "
                 "rollouts: use a temperature > 0 (1.0 samples the policy itself)")
    if policy:  # a bad LoRA spec of the trained model fails here, not after the models have loaded
        try:
            lora_options(cfg[policy].get("lora"))
        except ValueError as err:
            raise ConfigError(f"{policy}.lora: {err}") from err
    if cfg.reward.kind == "hf_classifier":
        _require(not OmegaConf.is_missing(cfg.reward, "model_id") and bool(cfg.reward.model_id), "reward.model_id",
                 OmegaConf.select(cfg, "reward.model_id", throw_on_missing=False) or "???",
                 f"reward={cfg.reward.name} needs the reward model: reward.model_id=<hub id or local folder>")
    r = cfg.get("generation")
    if r is not None:  # the generation engine (alignpro/generation.py)
        _require(r.get("engine") in ENGINES, "generation.engine", r.get("engine"), f"valid: {', '.join(ENGINES)}")
        _require(r.get("compile") in COMPILE, "generation.compile", r.get("compile"), "auto, true or false")
        _require(isinstance(r.get("bucket"), bool), "generation.bucket", r.get("bucket"), "true or false")
    _require(PLACEHOLDER in cfg.prompter.meta_prompt, "prompter.meta_prompt", cfg.prompter.meta_prompt,
             f"must contain the placeholder {PLACEHOLDER} where the user prompt goes")
    mode = cfg.prompter.get("rewrite", "full")
    _require(mode in REWRITES, "prompter.rewrite", mode, f"valid: {', '.join(REWRITES)} (set by meta_prompt=...)")
    sft = cfg.get("sft")
    if sft is not None and sft.get("enabled"):  # the supervised stage giving rho_sft (alignpro/sft.py)
        menu = sft.get("instructions")
        _require(bool(menu) and not isinstance(menu, str) and all(isinstance(i, str) and i.strip() for i in menu),
                 "sft.instructions", menu, "must be a non-empty list of non-empty instructions")
        for key in ("sft.n_examples", "sft.epochs", "sft.batch_size"):
            _positive_int(cfg, key)
        _number(cfg, "sft.learning_rate", 0)
    _no_secrets(OmegaConf.to_container(cfg, resolve=False))
    fb = cfg.frozen.backend
    _require(fb in FROZEN_BACKENDS, "frozen.backend", fb, f"valid: {', '.join(FROZEN_BACKENDS)}")
    if fb == "openai_api":
        _require(METHODS[m].trains != "frozen", "frozen.backend", fb, f"method={m} fine-tunes the frozen model "
                 "itself (the oracle, D7) "
                 "and a model behind an API cannot be trained: use a local frozen model (e.g. frozen=llama31_8b)")
        _api_endpoint(cfg, "frozen")
    if "judge" in cfg:
        validate_judge(cfg)
    # Offline assets: only those this run will load (a frozen model behind an API loads nothing here).
    needs = {"prompter": METHODS[m].uses_prompter, "frozen": fb == "hf", "reward": True}
    for role, needed in needs.items():
        if needed:
            try:
                check_available(cfg[role].source, role=role)
            except AssetError as err:
                raise ConfigError(f"{role}={cfg[role].name}: {err}") from err
