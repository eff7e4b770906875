"""The four arms of the paper's comparison (D2, D7) and what each one trains.

| method        | trains             | at evaluation, x is answered by          |
|---------------|--------------------|------------------------------------------|
| no_finetune   | nothing            | π_F(x)                                   |
| base_prompter | nothing            | π_F(x′), x′ ~ ρ_ref(·|x) (untrained)     |
| alignpro      | the prompter ρ     | π_F(x′), x′ ~ ρ(·|x)   (eq. 9)           |
| rlhf (oracle) | the frozen model   | π*(x), same trainer, reward and prompts  |

Training runs through :mod:`alignpro.trainer` with the reward callables of :mod:`alignpro.episode`.

Full fine-tuning or LoRA is the trained model's own config: ``prompter.lora`` for alignpro, ``frozen.lora`` for the
oracle (D7: an 8B oracle does not fit one 80 GB GPU with full fine-tuning, so the paper-scale frozen configs turn
LoRA on). The trained model is saved to ``run_dir/prompter`` or ``run_dir/oracle`` before evaluation: full weights,
or with LoRA only the adapter (``adapter_config.json`` + ``adapter_model.safetensors``, which name the base model)
plus the tokenizer; :func:`alignpro.assets.load_causal_lm` loads either kind of folder.

Evaluation uses the trained model as it is in memory. A LoRA model is evaluated with its adapter **unmerged**:
``merge_and_unload`` would add ΔW = (α/r)·B·A into bf16 base weights, whose rounding error (up to 2⁻⁸ ≈ 0.4 % of
each weight) is of the order of ΔW itself after a short run at lr 1.41e-5 (about 1 % of a weight), so the merged
model would not be the trained one; the unmerged adapter costs two rank-r matmuls per linear layer, small beside
the layer's own matmul at r = 16.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import set_seed

from alignpro.assets import resolve_dtype
from alignpro.episode import AlignProEpisode, OracleEpisode, SampleLog, StageTimer
from alignpro.frozen import Frozen, HFFrozen, frozen_path
from alignpro.prompter import Prompter, load_prompter, rewrite_conversation
from alignpro.reward import Reward
from alignpro.rollout import Rollout, Sampling
from alignpro.sft import sft_prompter_path
from alignpro.trainer import JsonlLog, RewardKLProgress, build_trainer, trainer_args

METHODS = ("alignpro", "rlhf", "no_finetune", "base_prompter")


@dataclass
class Arm:
    """What answers an evaluation prompt: an optional prompter in front of a responder."""

    name: str
    prompter: Prompter | None
    responder: Frozen


def sampling_of(model_cfg) -> Sampling:
    s = model_cfg.sampling
    return Sampling(model_cfg.max_new_tokens, s.temperature, s.top_p, s.top_k)


def training_dtype(dtype: str, device: str, lora) -> torch.dtype:
    """The dtype the trained policy's weights are loaded in.

    With LoRA: the config's dtype (bf16 on GPU): the base weights are frozen and peft keeps the adapter in fp32.
    Full fine-tuning: always fp32 master weights, TRL's ``bf16=True`` autocasting the compute. Pure-bf16 weights
    would lose most updates: AdamW's step is about lr = 1.41e-5 per weight, below half of bf16's rounding step for
    any weight larger than about 0.004 in magnitude (measured: 10 AdamW steps on N(0, 0.02²) bf16 weights change
    15 % of them; in fp32, all). Memory for a full fine-tune: 16 bytes/parameter (weights, gradients, two Adam
    moments in fp32) plus the fp32 ρ_ref copy; see conf/prompter/qwen25_1_5b.yaml for the arithmetic."""
    full_finetune = lora is None or lora is False  # as in trainer.lora_config; an empty {} is LoRA with defaults
    return torch.float32 if full_finetune else resolve_dtype(dtype, device)


def _fit(cfg, *, policy_path: str, rows: list[dict], episode, sampling: Sampling, dtype: str, run_dir: Path,
         device: str, report_to: list[str], timer: StageTimer, label: str, lora=None, callbacks=()):
    args = trainer_args(cfg.trainer, lam=cfg.lam, seed=cfg.seed, output_dir=str(run_dir / "checkpoints"),
                        sampling=sampling, device=device, report_to=report_to)
    trainer = build_trainer(cfg.trainer, model_path=policy_path, model_dtype=training_dtype(dtype, device, lora),
                            train_rows=rows, reward_fn=episode, args=args,
                            callbacks=[RewardKLProgress(label), JsonlLog(run_dir / "train_log.jsonl"), *callbacks],
                            lora=lora)
    # Time the policy's own sampling (the rest of a step is log-prob passes, the episode and the update).
    trainer._generate = timer.wrap("policy_generation", trainer._generate)
    with timer("train_total"):
        trainer.train()
    return trainer


def run_method(cfg, *, train_records: list[dict], reward: Reward, frozen: Frozen | None, run_dir: Path,
               device: str, report_to: list[str], timer: StageTimer | None = None, log=None) -> Arm:
    """Factory for the ``method`` group: train what the method trains, return the arm to evaluate. ``log`` takes
    metric dicts for W&B (the SFT stage's curve)."""
    timer = timer or StageTimer()
    rollout = Rollout.from_config(cfg.get("rollout"))  # evaluation generation; TRL's rollouts: trainer.extra
    name = cfg.method.name
    if name not in METHODS:
        raise ValueError(f"method.name='{name}' is unknown; valid: {', '.join(METHODS)}")
    samples = SampleLog(run_dir / "samples.jsonl")
    if name == "no_finetune":
        return Arm(name, None, frozen)
    p = cfg.prompter
    if name in ("base_prompter", "alignpro"):
        with timer("sft"):  # ρ_ref: the prompter as loaded, or ρ_sft (sft=instructions), trained once and cached
            rho_ref = sft_prompter_path(p, cfg.get("sft"), train_records, device, log)
        set_seed(cfg.seed)  # a ρ_sft trained now or read from the cache: the same random stream after it
    if name == "base_prompter":
        return Arm(name, load_prompter(p, path=rho_ref, device=device, rollout=rollout), frozen)
    if name == "alignpro":
        rows = [{"prompt": rewrite_conversation(r["prompt"], p.meta_prompt, p.get("system")), "x": r["prompt"]}
                for r in train_records]
        episode = AlignProEpisode(frozen, reward, cfg.reward.prompt, samples, timer, p.get("rewrite", "full"))
        trainer = _fit(cfg, policy_path=rho_ref, rows=rows, episode=episode, sampling=sampling_of(p),
                       dtype=p.dtype, run_dir=run_dir, device=device, report_to=report_to, timer=timer,
                       label="align-pro", lora=p.get("lora"))
        # Finished work is on disk before evaluation starts (with LoRA: the adapter and the tokenizer).
        trainer.save_model(str(run_dir / "prompter"))
        model = trainer.model.eval()  # with LoRA a PeftModel, adapter unmerged (see the module docstring)
        return Arm(name, Prompter(model, trainer.processing_class, p.meta_prompt, p.get("system"), p.batch_size,
                                  rollout, p.get("rewrite", "full")),
                   frozen)
    # rlhf: the oracle fine-tunes the frozen model itself on x with the same trainer and reward (D7).
    f = cfg.frozen
    rows = [{"prompt": ([{"role": "system", "content": f.system}] if f.get("system") else [])
             + [{"role": "user", "content": r["prompt"]}], "x": r["prompt"]} for r in train_records]
    trainer = _fit(cfg, policy_path=frozen_path(f), rows=rows, episode=OracleEpisode(reward, samples, timer),
                   sampling=sampling_of(f), dtype=f.dtype, run_dir=run_dir, device=device, report_to=report_to,
                   timer=timer, label="rlhf-oracle", lora=f.get("lora"))
    trainer.save_model(str(run_dir / "oracle"))
    return Arm(name, None, HFFrozen(trainer.model.eval(), trainer.processing_class, sampling_of(f), f.get("system"),
                                    f.batch_size, rollout))
