"""Validation of a composed config, run before any data or model loads: one clear message per bad value.

Hydra itself rejects an unknown group option (``prompter=nope`` lists the available ones). :func:`validate` types
the config by the schema (:mod:`alignpro.config.schema`: one dataclass per group, with each key's type, choices and
range)
and then checks what spans groups: the arm exists and its trained model can be trained (sampled rollouts, a valid
LoRA spec, not a model behind an API), an API endpoint's settings (by the client's own rules: URL, concurrency,
timeouts, the key's variable *name*; the key itself is only looked up when the client is built), the offline assets
a run will load, and that no secret is passed as a config value.

Neither the schema nor the method registry imports torch, so a bad value is reported in well under a second. The
factories receive the typed config and trust what was checked here.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from alignpro.config.endpoint import endpoint_rules, require_openai
from alignpro.config.rules import ConfigError, check, lora_options, require, typed
from alignpro.config.schema import Config, JudgeConfig
from alignpro.config.sources import AssetError, check_available
from alignpro.config.trained import trained_source
from alignpro.run.secrets import SECRET_KEY, declare_key_env

__all__ = ["ConfigError", "validate", "validate_judge"]


def _no_secrets(node, path: str = "") -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}.{k}" if path else str(k)
            if SECRET_KEY.search(str(k)) and isinstance(v, str) and v and not v.startswith("${"):
                raise ConfigError(f"{here} holds a secret in the config; secrets are read from the environment "
                                  f"only. Unset it and export the variable instead (e.g. WANDB_API_KEY).")
            _no_secrets(v, here)


def _api_endpoint(node: DictConfig, group: str) -> None:
    """The keys of an OpenAI-compatible endpoint under ``group``, by the rules the client applies too."""
    try:
        endpoint_rules(node)
    except ValueError as err:
        raise ConfigError(f"{group}.{err}") from None
    declare_key_env(node.api_key_env)  # the key's value is redacted from everything written from now on
    require_openai()


def _available(node: DictConfig, role: str) -> None:
    try:
        check_available(node.source, role=role)
    except AssetError as err:
        raise ConfigError(f"{role}={node.name}: {err}") from err


def _judge(j: DictConfig) -> None:
    if j.backend == "openai_api":
        _api_endpoint(j, "judge")
    else:
        _available(j, "judge")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node


def validate_judge(cfg: Any) -> DictConfig:
    """Type and check the ``judge`` group of ``cfg`` alone (``conf/judge/``: the report's ``--judge``); returns
    that group typed."""
    _no_secrets(_plain(cfg["judge"]), "judge")
    j = typed(cfg["judge"], JudgeConfig, "judge.")
    check(j, JudgeConfig, "judge.")
    _judge(j)
    return j


def validate(cfg: Any) -> DictConfig:
    """The config typed by :class:`alignpro.config.schema.Config`, or :class:`ConfigError` on the first invalid value
    (:class:`alignpro.models.api.EndpointError` when an API backend lacks the ``openai`` package; both are BadInput)."""
    _no_secrets(_plain(cfg))
    source = OmegaConf.select(cfg, "method.from_run")
    if source:  # method=trained: the prompter block is the training run's, its rewrite settings included
        cfg = OmegaConf.merge(cfg, {"prompter": trained_source(source)[0]["prompter"]})
    cfg = typed(cfg, Config)
    check(cfg, Config)
    m = cfg.method.name
    for name in cfg.method.needs:  # e.g. best_of_n's N: refused here, not after the models have loaded
        require(cfg.method.get(name) is not None, f"method.{name}", None, f"method={m} needs a value for it (its "
                f"default: conf/method/{m}.yaml)")
    policy = cfg.method.trains
    require(policy or cfg.sweep_objective != "train_objective", "sweep_objective", cfg.sweep_objective,
            f"method={m} trains nothing, so it has no training objective to return: use heldout_reward, or a "
            "method that trains (alignpro, rlhf)")
    if policy:  # the trained policy's rollouts must be sampled: RLOO/GRPO estimate gradients from samples
        t = cfg[policy].sampling.temperature
        require(t > 0, f"{policy}.sampling.temperature", t, f"method={m} trains the {policy} from sampled "
                "rollouts: use a temperature > 0 (1.0 samples the policy itself)")
        try:  # a bad LoRA spec of the trained model fails here, not after the models have loaded
            lora_options(cfg[policy].lora)
        except ValueError as err:
            raise ConfigError(f"{policy}.lora: {err}") from err
    fb = cfg.frozen.backend
    if fb == "openai_api":
        require(policy != "frozen", "frozen.backend", fb, f"method={m} fine-tunes the frozen model itself (the "
                "oracle, D7) and a model behind an API cannot be trained: use a local frozen model (e.g. "
                "frozen=llama31_8b)")
        _api_endpoint(cfg.frozen, "frozen")
    require(cfg.reward.fit_dataset is None or cfg.reward.kind == "bt_encoder", "reward.fit_dataset", "a dataset",
            f"reward={cfg.reward.name} is a pretrained reward model and fits nothing: leave it null")
    pairs_from, pairs_key = ((cfg.reward.fit_dataset, "reward.fit_dataset") if cfg.reward.fit_dataset is not None
                             else (cfg.dataset, "dataset"))
    if cfg.reward.kind == "bt_encoder" and pairs_from.source == "file":
        for key in ("chosen_field", "rejected_field"):
            require(pairs_from[key] is not None, f"{pairs_key}.{key}", None, f"reward={cfg.reward.name} fits its "
                    "Bradley-Terry head on the dataset's chosen/rejected pairs: name the file's answer column, or "
                    "use a pretrained reward (e.g. reward=rm_gemma_2b)")
    if cfg.judge is not None:
        _judge(cfg.judge)
    # Offline assets: only those this run will load (a frozen model behind an API loads nothing here).
    needs = {"prompter": cfg.method.uses_prompter, "frozen": fb == "hf", "reward": True}
    for role, needed in needs.items():
        if needed:
            _available(cfg[role], role)
    return cfg
