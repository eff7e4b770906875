"""The RL plumbing both trained arms share (Align-Pro's prompter, the oracle's frozen model): TRL's RLOO (D3,
default) or GRPO, its config from the ``trainer`` group, LoRA, the per-step logs. The objective itself, eq. 9 with
β = λ, is written out in alignpro/methods/alignpro.py. GRPO puts a k3 per-token KL in the loss instead of RLOO's
sequence-level penalty in the reward; with ``beta = λ`` and ``scale_rewards="none"`` it is the closest match and is
offered as an ablation. RLOO needs k ≥ 2 rewrites per prompt; the paper's PPO drew one.

LoRA (D7). A model config's ``lora`` key (``prompter.lora`` for Align-Pro, ``frozen.lora`` for the RLHF oracle) is
either ``null`` (full fine-tuning) or a dict turned into a ``peft.LoraConfig`` by :func:`lora_config` and handed to
the trainer as ``peft_config``. TRL then wraps the policy itself and keeps **no second copy as ρ_ref**: in TRL 1.16's
``RLOOTrainer.__init__`` the branch ``elif is_peft_model(model): self.ref_model = None`` ("the adapter can be
disabled to revert to the initial model"), and in ``_generate_and_score_completions`` the reference log-probs are
computed under ``use_adapter(model, adapter_name=None)``, i.e. ``model.disable_adapter()``: the base weights, which
are the untrained model (GRPOTrainer does the same). With a fresh adapter (B = 0) ρ_ref is therefore exactly the
model before training, as eq. 9 wants. Base weights stay frozen in their loaded dtype (bf16 on GPU); peft keeps the
adapter weights in fp32, so the optimizer's small steps at lr 1.41e-5 are not rounded away.

The trained model is saved (``run_dir/prompter`` or ``run_dir/oracle``) before evaluation: full weights, or with
LoRA only the adapter (``adapter_config.json`` + ``adapter_model.safetensors``, which name the base model) plus the
tokenizer; :func:`alignpro.models.assets.load_causal_lm` loads either kind of folder. Evaluation uses the trained model
as
it is in memory; a LoRA model keeps its adapter **unmerged**: ``merge_and_unload`` would add ΔW = (α/r)·B·A into
bf16 base weights, whose rounding error (up to 2⁻⁸ ≈ 0.4 % of each weight) is of the order of ΔW itself after a
short run at lr 1.41e-5 (about 1 % of a weight), so the merged model would not be the trained one; the unmerged
adapter costs two rank-r matmuls per linear layer, small beside the layer's own matmul at r = 16.

Edges (docs/faults.md), set up by :func:`build_trainer` for every trainer: a policy prompt longer than the policy's
context allows beside ``max_completion_length`` is cut from the left like every generation prompt
(:func:`fit_policy_prompts`; TRL 1.16's RLOO/GRPO have no ``max_prompt_length``), and a non-finite per-token
log-prob or logged loss stops the run (:func:`guard_log_probs`, :class:`FiniteLogs`).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

from alignpro.config.schema import PAPER_BUDGET, Config, TrainerConfig, lora_options
from alignpro.models.assets import resolve_dtype
from alignpro.models.generation import fit_prompts, prompt_budget
from alignpro.run.directory import RunDir, read_jsonl
from alignpro.run.numerics import is_finite, shown, stop
from alignpro.run.timing import StageTimer

if TYPE_CHECKING:
    import torch

    from alignpro.run.tracking import Tracker

log = logging.getLogger("alignpro")


def completion_text(completion) -> str:
    """TRL hands conversational completions as ``[{"role": "assistant", "content": ...}]``; plain ones as str."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion if m.get("role") == "assistant")


class StepLog(TrainerCallback):
    """Every logged training row (step, reward, kl_seq, objective, lengths, …), as it is logged: appended to
    ``train_log.jsonl`` (the curves without W&B, kept if the run dies) and sent to W&B as ``train/<key>`` through
    the run's one :class:`alignpro.run.tracking.Tracker` (TRL itself reports to nothing)."""

    def __init__(self, path: str | Path, tracker: Tracker | None = None):
        self.path, self.tracker = Path(path), tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:  # logs are already averaged over processes
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, **logs}, default=float) + "\n")
        self.send(state.global_step, logs)

    def send(self, step: int, logs: dict) -> None:
        """One row to W&B, its curves keyed by ``train/global_step``."""
        if self.tracker is not None:
            scalars = {f"train/{k}": v for k, v in logs.items() if isinstance(v, (int, float))}
            self.tracker.log({**scalars, "train/global_step": step})

    def replay(self) -> None:
        """A resumed job's rows up to its checkpoint, sent again: an offline W&B run cannot be appended to (a new
        attempt starts a new offline file with the same id, and what the killed attempt had not flushed is lost),
        so the resumed attempt's file holds the whole curve. An online run keeps its rows on the server instead."""
        if self.tracker is not None and self.tracker.offline:
            for row in read_jsonl(self.path):
                self.send(row["step"], {k: v for k, v in row.items() if k != "step"})


class RewardKLProgress(TrainerCallback):
    """One progress bar over optimizer steps, showing the latest reward, sequence KL and eq. 9's objective
    (replaces HF's bar); ``show`` = (label, logged key) pairs."""

    def __init__(self, desc: str = "train",
                 show: tuple = (("reward", "reward"), ("kl", "kl_seq"), ("objective", "objective"))):
        self.desc, self.show, self.bar = desc, show, None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.desc, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs:
            shown = {name: logs[k] for name, k in self.show if isinstance(logs.get(k), (int, float))}
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()}, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


class CheckpointComplete(TrainerCallback):
    """Marks a checkpoint whole once TRL has written all of it (``on_save`` runs after the save and the rotation of
    older checkpoints), so a resume never picks one a kill cut short (``RunDir.newest_checkpoint``)."""

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.run_dir.mark_checkpoint_complete(state.global_step)


# Logged values made from the log-probs, their gradients or the rewards. TRL and transformers drop NaN values from
# what they log (a mean over none is logged as None, and with ``logging_nan_inf_filter`` a NaN loss is replaced
# by the running average), so a None here is a NaN too.
FINITE_KEYS = ("loss", "grad_norm", "kl", "entropy", "reward")


class FiniteLogs(TrainerCallback):
    """Stops the run at a logged row whose loss, gradient norm, KL, entropy or reward is not finite. It runs first
    of all callbacks, so the row never reaches ``train_log.jsonl``, W&B or the bar; logging comes before saving
    in transformers' loop, so the step is not checkpointed either. The step's samples are already in
    ``samples.jsonl``; they are copied into ``nonfinite_sample.json`` with the row."""

    def __init__(self, run_dir: RunDir | None = None):
        self.run_dir = run_dir

    def on_log(self, args, state, control, logs=None, **kwargs):
        # fp16's loss scaler (trainer.extra={fp16: true}) logs an inf gradient norm when it rightly skips a step
        keys = [k for k in FINITE_KEYS if not (k == "grad_norm" and getattr(args, "fp16", False))]
        bad = [k for k in keys if logs and k in logs and not is_finite(logs[k])]
        if not bad:
            return
        step = state.global_step
        samples = [r for r in read_jsonl(self.run_dir.samples) if r.get("step") == step - 1] if self.run_dir else []
        record = {"what": bad[0], "value": shown(logs[bad[0]]), "step": step,
                  "logs": {k: shown(v) if isinstance(v, (int, float)) or v is None else v for k, v in logs.items()},
                  "samples": [{**r, "r": shown(r.get("r"))} for r in samples]}
        # The logged row is the same on every process (already averaged): every process stops, one writes.
        stop(self.run_dir, record, f"{bad[0]}={logs[bad[0]]} logged at training step {step}; the run stopped before "
                                   f"checkpointing it; the step's samples are in samples.jsonl (step {step - 1})",
             write=state.is_world_process_zero)


def guard_log_probs(trainer, run_dir: RunDir | None = None) -> None:
    """Check every per-token log-prob TRL computes (the policy's and ρ_ref's scoring passes, then the loss pass)
    for NaN/inf on the completion tokens, and stop at the first bad one with the rollouts it came from.

    Why here: this one method is where TRL 1.16's RLOO and GRPO turn logits into log-probs, each pass calls it,
    and its inputs carry the token ids and the mask (the completion's part of ``attention_mask``). Downstream the
    values are gone: a NaN KL makes the reward NaN, which TRL reads as unscorable (advantage zeroed), and the
    logged ``kl`` mean drops it, so the run would go on silently. The scoring passes run before the reward
    function, so the rollouts are saved from the token ids here rather than found in ``samples.jsonl``."""
    import torch

    forward = trainer._get_per_token_logps_and_entropies

    def checked(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        out = forward(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        mask = attention_mask[:, -logits_to_keep:].bool()
        bad = ~torch.isfinite(out[0].detach()) & mask
        if bool(bad.any()):
            _stop_on_log_probs(trainer, run_dir, model, input_ids, mask, logits_to_keep, out[0].detach(), bad)
        return out

    trainer._get_per_token_logps_and_entropies = checked


def _stop_on_log_probs(trainer, run_dir, model, input_ids, mask, logits_to_keep, logps, bad) -> None:
    import torch

    tok = trainer.processing_class
    tok = getattr(tok, "tokenizer", tok)
    if model is getattr(trainer, "ref_model", None):
        which = "the reference model's scoring pass"
    elif torch.is_grad_enabled():
        which = "the policy's loss pass"
    else:
        which = "a scoring pass (policy, or ρ_ref through the disabled adapter)"
    rows = bad.any(-1).nonzero().flatten().tolist()
    first = logps[bad][0].item()
    samples = []
    for i in rows:
        prompt = input_ids[i, :-logits_to_keep]
        completion = input_ids[i, -logits_to_keep:][mask[i]]
        samples.append({"index": i, "prompt": tok.decode(prompt, skip_special_tokens=True),
                        "completion": tok.decode(completion, skip_special_tokens=True),
                        "bad_positions": bad[i].nonzero().flatten().tolist(),
                        "log_probs": [shown(v) for v in logps[i][mask[i]].tolist()]})
    step = trainer.state.global_step
    record = {"what": "log-prob", "value": shown(first), "where": which, "step": step,
              "n_samples": int(input_ids.size(0)), "samples": samples}
    stop(run_dir, record, f"log-prob={first} in {which} at training step {step + 1}, {len(rows)} of "
                          f"{input_ids.size(0)} rollouts; the run stopped before training on them")


def fit_policy_prompts(trainer, max_new_tokens: int) -> None:
    """Cut the policy's prompts to its context, the same rule as :func:`alignpro.models.generation.generate_chat`: from
    the left, keeping a leading BOS, to ``context − max_completion_length`` tokens. TRL 1.16 tokenizes the prompts
    in ``_tokenize_prompts`` and uses those ids for the rollout and every log-prob pass, so cutting its output
    cuts them everywhere. The step's ``truncated_prompts`` is the share of its rollouts whose prompt was cut."""
    budget = prompt_budget(trainer.model, max_new_tokens)
    if budget is None:
        return
    tokenize = trainer._tokenize_prompts
    bos = getattr(trainer.processing_class, "bos_token_id", None)

    def cut(prompts):
        prompt_ids, images, multimodal = tokenize(prompts)
        kept, n_cut = fit_prompts(prompt_ids, budget, bos)
        if n_cut and multimodal:  # per-token image fields would no longer line up with the ids
            raise ValueError("a multimodal prompt is longer than the policy's context; it cannot be cut")
        trainer._log_metric("truncated_prompts", n_cut / max(len(prompt_ids), 1))
        return kept, images, multimodal

    trainer._tokenize_prompts = cut


LORA_KEYS = {"r": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "target_modules"}


def lora_config(lora) -> Any:
    """A model config's ``lora`` value → ``peft.LoraConfig`` for a causal LM, or ``None`` for full fine-tuning.

    ``lora`` is ``None``/``false`` (full fine-tuning) or a mapping with ``r``, ``alpha`` (default 2r), ``dropout``,
    ``target_modules`` (defaults in :data:`alignpro.config.schema.LORA_DEFAULTS`, checked by
    :func:`alignpro.config.schema.lora_options`); any other key is passed to ``LoraConfig`` verbatim (e.g.
    ``use_rslora``,
    ``modules_to_save``)."""
    opts = lora_options(lora)
    if opts is None:
        return None
    from peft import LoraConfig

    try:
        return LoraConfig(task_type="CAUSAL_LM", **{LORA_KEYS.get(k, k): v for k, v in opts.items()})
    except TypeError as err:
        raise ValueError(f"lora={lora!r}: {err}; valid keys: r, alpha, dropout, target_modules, or any "
                         "peft.LoraConfig field") from err


def resolve_max_steps(cfg: TrainerConfig, n_train: int) -> int:
    """``trainer.max_steps: paper`` → optimizer steps of the paper's budget (docs/decisions.md, D12): legacy TRL
    PPO drew one rollout per train prompt in one pass, 128 per batch, and trained 4 epochs on each batch. Here a
    batch is ``prompts_per_step`` × k rollouts and each is trained ``num_iterations`` times, so the same number of
    rollouts is ⌈N / (prompts_per_step · k)⌉ batches and that times ``num_iterations`` optimizer steps. An integer
    passes through."""
    if cfg.max_steps != PAPER_BUDGET:
        return int(cfg.max_steps)
    batches = math.ceil(n_train / (cfg.prompts_per_step * cfg.num_generations))
    return max(batches, 1) * cfg.num_iterations


def quiet_library_noise() -> None:
    """Silence what transformers/TRL print that is not the user's business: per-file "Loading weights" bars (our
    own bars show the long work), TRL 1.16 calling a transformers-5 deprecated alias once per step, and, on resume,
    the trainer's "missing keys ['lm_head.weight']" of a model whose output head is tied to its input embeddings
    (SmolLM2, the tiny models): the checkpoint leaves the tied copy out, and loading the embeddings fills the one
    shared tensor (tests/test_resume.py checks that a resumed run equals an uninterrupted one)."""
    import logging as std_logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated", category=FutureWarning)
    trainer_log = std_logging.getLogger("transformers.trainer")
    if not any(isinstance(f, _TiedHeadNotMissing) for f in trainer_log.filters):
        trainer_log.addFilter(_TiedHeadNotMissing())


class _TiedHeadNotMissing:
    """Drops the resume warning about a tied output head (see :func:`quiet_library_noise`); any other key is kept."""

    def filter(self, record) -> bool:
        return "missing keys in the checkpoint model loaded: ['lm_head.weight']" not in record.getMessage()


def check_trainer_extra(cfg: TrainerConfig) -> None:
    """``trainer.extra`` goes to TRL's config verbatim: a key that is not one of its fields (a typo) is refused here,
    before any model loads, instead of by TRL once the models have."""
    import dataclasses
    import difflib

    from trl import GRPOConfig, RLOOConfig

    from alignpro.config.schema import ConfigError

    cls = GRPOConfig if cfg.name == "grpo" else RLOOConfig
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(cfg.extra or {}):
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"trainer.extra.{key} is not an option of trl.{cls.__name__}; {hint}valid: any field of "
                              f"trl.{cls.__name__} (its docs list them)")


def trainer_args(cfg: TrainerConfig, *, beta: float, seed: int, output_dir: str, sampling, device: str):
    """TRL config for the ``trainer`` group. ``beta`` weighs the KL penalty (Align-Pro passes λ: see the module
    docstring); ``sampling`` is the trained policy's rollout sampling (prompter or oracle)."""
    from trl import GRPOConfig, RLOOConfig

    on_cpu = device == "cpu"
    common: dict[str, Any] = dict(
        output_dir=output_dir,
        beta=float(beta),
        num_generations=cfg.num_generations,
        # One optimizer step = prompts_per_step prompts × k rewrites, generated together, in micro_batches passes
        # (TRL counts steps_per_generation in passes: one generation per optimizer step).
        per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations // cfg.micro_batches,
        gradient_accumulation_steps=cfg.micro_batches,
        steps_per_generation=cfg.micro_batches,
        num_iterations=cfg.num_iterations,  # each generated batch is trained on this many times (PPO's epochs)
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        max_completion_length=sampling.max_new_tokens,
        temperature=sampling.temperature,  # > 0: checked by config.validate (RL needs sampled rollouts)
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        seed=seed,
        data_seed=seed,
        logging_steps=1,
        # A checkpoint every save_steps and at the last step, with what a resume needs (optimizer, scheduler, RNG).
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 1,
        save_total_limit=cfg.save_total_limit,
        save_only_model=False,
        report_to=[],  # W&B is written by alignpro.run.tracking alone (StepLog, the samples table), not by TRL
        log_completions=False,
        num_completions_to_print=0,  # samples go to samples.jsonl and W&B, not the console
        disable_tqdm=True,  # RewardKLProgress draws the bar
        use_cpu=on_cpu,
        bf16=not on_cpu and cfg.bf16,  # bf16 on CPU is ~6× slower (docs/offline-assets.md §9)
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5 name of gradient checkpointing
        dataloader_num_workers=0,
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN (FiniteLogs stops the run), not averaged away
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_server_base_url=cfg.vllm_server_base_url,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
    )
    if cfg.name == "grpo":
        common.update(scale_rewards="none", loss_type=cfg.loss_type)
    common.update(dict(cfg.extra or {}))  # trainer.extra wins: any TRL option, verbatim
    return (GRPOConfig if cfg.name == "grpo" else RLOOConfig)(**common)


def build_trainer(cfg: TrainerConfig, *, model_path: str, model_dtype, train_rows: list[dict], reward_fn, args,
                  callbacks, lora=None, first_callbacks=(), run_dir: RunDir | None = None):
    """Factory for the ``trainer`` group: ``train_rows`` carry ``prompt`` (conversation) and ``x`` (for the reward).
    ``lora`` is the trained model's ``lora`` config value (``None`` = full fine-tuning). ``first_callbacks`` run
    before every other callback (after :class:`FiniteLogs`), so what they add to a step's logs reaches W&B, the
    JSONL log and the bar. Policy prompts are cut to the context and log-probs checked (module docstring);
    ``run_dir`` is where a non-finite value's samples are saved."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer, RLOOTrainer

    args.model_init_kwargs = {"dtype": model_dtype}
    cls = GRPOTrainer if cfg.name == "grpo" else RLOOTrainer
    # The policy is passed as a path, not a live model: TRL then loads ρ_ref from the same path (full fine-tuning),
    # or wraps the policy in a fresh LoRA adapter and gets ρ_ref by disabling it (peft_config; see the docstring).
    trainer = cls(model=model_path, reward_funcs=reward_fn, args=args, train_dataset=Dataset.from_list(train_rows),
                  callbacks=callbacks, peft_config=lora_config(lora))
    trainer.remove_callback(PrinterCallback)  # logs go to W&B and the progress bar, not as dicts on stdout
    trainer.callback_handler.callbacks[:0] = [FiniteLogs(run_dir), *first_callbacks]
    guard_log_probs(trainer, run_dir)
    fit_policy_prompts(trainer, args.max_completion_length)
    return trainer


def training_dtype(dtype: str, device: str, lora) -> torch.dtype:
    """The dtype the trained policy's weights are loaded in.

    With LoRA: the config's dtype (bf16 on GPU): the base weights are frozen and peft keeps the adapter in fp32.
    Full fine-tuning: always fp32 master weights, TRL's ``bf16=True`` autocasting the compute. Pure-bf16 weights
    would lose most updates: AdamW's step is about lr = 1.41e-5 per weight, below half of bf16's rounding step for
    any weight larger than about 0.004 in magnitude (measured: 10 AdamW steps on N(0, 0.02²) bf16 weights change
    15 % of them; in fp32, all). Memory for a full fine-tune: 16 bytes/parameter (weights, gradients, two Adam
    moments in fp32) plus the fp32 ρ_ref copy; see conf/prompter/qwen25_1_5b.yaml for the arithmetic."""
    import torch

    full_finetune = lora is None or lora is False  # as in lora_config; an empty {} is LoRA with defaults
    return torch.float32 if full_finetune else resolve_dtype(dtype, device)


def fit(cfg: Config, *, beta: float, policy_path: str, rows: list[dict], reward_fn, sampling, dtype: str,
        run_dir: RunDir, device: str, timer: StageTimer, label: str, tracker: Tracker | None = None, lora=None,
        first_callbacks=(), callbacks=()):
    """Build the ``trainer`` group's TRL trainer for one policy, train it to ``max_steps``, return it. Every step's
    logs go to ``train_log.jsonl``, a progress bar and, with a ``tracker``, W&B. With ``resume=auto`` and a complete
    checkpoint in the run dir, training continues from it (weights, optimizer, scheduler, RNG, data position)."""
    args = trainer_args(cfg.trainer, beta=beta, seed=cfg.seed, output_dir=str(run_dir.checkpoints),
                        sampling=sampling, device=device)
    step_log = StepLog(run_dir.train_log, tracker)
    trainer = build_trainer(cfg.trainer, model_path=policy_path, model_dtype=training_dtype(dtype, device, lora),
                            train_rows=rows, reward_fn=reward_fn, args=args,
                            callbacks=[RewardKLProgress(label), step_log, CheckpointComplete(run_dir), *callbacks],
                            lora=lora, first_callbacks=first_callbacks, run_dir=run_dir)
    resume = run_dir.newest_checkpoint() if cfg.resume == "auto" else None
    trained = resume is not None and resume[0] >= cfg.trainer.max_steps  # the job died after training
    if trainer.accelerator.is_main_process:
        if resume is None:
            run_dir.rewind_logs(0)  # an attempt killed before its first checkpoint: its rows are redone from step 1
        else:
            log.info("resuming from %s (step %d of %d)", resume[1], resume[0], cfg.trainer.max_steps)
            if not trained:
                run_dir.rewind_logs(resume[0])
            step_log.replay()
    trainer.accelerator.wait_for_everyone()  # no process appends a sample before the logs are rewound
    # Time the policy's own sampling (the rest of a step is log-prob passes, the reward function and the update).
    trainer._generate = timer.wrap("policy_generation", trainer._generate)
    with timer("train_total"):
        if trained:  # only the weights are needed: transformers' loop would run one step before checking max_steps
            trainer._load_from_checkpoint(str(resume[1]))
        else:
            trainer.train(resume_from_checkpoint=str(resume[1]) if resume else None)
    if tracker is not None:  # every scored training sample, one W&B table (the rows of samples.jsonl)
        tracker.table("train/samples", read_jsonl(run_dir.samples))
    return trainer
