"""One job's memory plan and its GPU-hours (:mod:`alignpro.tools.plan.cost`). The memory model (per stage; the peak is
the
largest stage; docs/memory-plan.md explains each term):

* weights: the trained policy in :func:`alignpro.methods.rl.training_dtype` (fp32 master weights for full fine-tuning,
the
  config's dtype under LoRA, whose adapter peft keeps in fp32); every other model in its config's dtype (bf16 on GPU);
* optimizer: AdamW's two fp32 moments per trainable parameter; gradients (fp32) exist during the update only;
* ρ_ref: a second fp32 copy of the policy for full fine-tuning; nothing with LoRA (TRL disables the adapter);
* KV cache: 2 (K, V) × layers × KV heads × head dim × 2 bytes per token, at the batch each stage generates with:
  the policy's rollouts all at once (``per_device_train_batch_size × steps_per_generation``, which alignpro.methods.rl
  sets
  to ``prompts_per_step × num_generations``; ``trainer.extra`` may change both), π_F in batches of
  ``frozen.batch_size``;
* log-prob and loss passes: TRL 1.16 runs them ``per_device_train_batch_size`` rows at a time through its fused
  LM head, which never builds the (tokens × vocabulary) logits: one [4,096 × 32,768] tile in the compute dtype plus
  fp32 per-token statistics; the loss pass adds an fp32 gradient of the hidden states;
* activations: with gradient checkpointing, each layer's input (tokens × hidden, in the residual stream's dtype: fp32
  for fp32 master weights) kept for the backward pass plus one layer's activations recomputed; without, every
  layer's. One layer's activations = (6·hidden + 2·KV width + 4·intermediate + the inputs of its LoRA-adapted
  linears, which LoRA's dropout copies) values per token. A no-grad forward (the log-prob passes, the RM) holds
  (2·hidden + 3·intermediate) values per token at its widest point, the MLP.

Prompt lengths are not in a config: the user prompt x is taken as ``--prompt-tokens`` tokens (default 512, the padded
length of a batch of long prompts), chat templates as 64 tokens, the meta-prompt as its characters / 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from alignpro.tools.plan.cost import (
    APPROXIMATE_TRAIN_PROMPTS,
    decode_ms,
    forward_s,
    micro_batches,
    train_s,
    trained_steps,
)
from alignpro.tools.plan.shapes import ContextCheck, Shape, model_shape

# Prompt-length assumptions (no config holds them): see the module docstring.
PROMPT_TOKENS = 512
TEMPLATE_TOKENS = 64
CHARS_PER_TOKEN = 3  # English BPE averages about 4 characters a token: 3 over-counts the meta-prompt a little

# TRL 1.16's fused LM head (trl/kernels/chunked_logprob.py): token x vocabulary tile of one projection.
HEAD_TILE = (4096, 32768)


@dataclass
class Stage:
    """One stage of a job: what it adds on top of the persistent memory."""

    name: str
    items: list[tuple[str, float]] = field(default_factory=list)  # (what, bytes)
    sequential: bool = False  # the items run one after another (the stage needs the largest), else all at once

    @property
    def transient(self) -> float:
        sizes = [b for _, b in self.items]
        return (max(sizes, default=0.0) if self.sequential else sum(sizes))


@dataclass
class ArmPlan:
    """The memory plan and time estimate of one job's config."""

    key: str  # the arm and its models, e.g. "alignpro P qwen25_1_5b F llama31_8b R rm_gemma_2b"
    method: str
    models: dict[str, str]  # role -> config name
    persistent: list[tuple[str, float]]
    stages: list[Stage]
    checks: list[ContextCheck]
    shapes: dict[str, Shape]
    hours: float | None
    time_terms: dict[str, float]  # seconds by part
    steps: dict[str, int]
    notes: list[str] = field(default_factory=list)  # what the estimate rests on beyond the config

    @property
    def signature(self) -> tuple:
        """What decides the memory: two jobs with the same signature share one plan."""
        return (self.key, tuple(self.persistent), tuple((s.name, tuple(s.items)) for s in self.stages))

    @property
    def base(self) -> float:
        return sum(b for _, b in self.persistent)

    @property
    def peak_stage(self) -> Stage:
        return max(self.stages, key=lambda s: s.transient)

    @property
    def peak(self) -> float:
        return self.base + self.peak_stage.transient


def nbytes(dtype: Any) -> int:
    import torch

    return torch.empty((), dtype=dtype).element_size()


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _activation_bytes(s: Shape, tokens: int, value_bytes: int, residual_bytes: int, checkpointing: bool) -> float:
    """Activations a backward pass over ``tokens`` keeps (module docstring)."""
    one_layer = tokens * s.layer_values_per_token * value_bytes
    if not checkpointing:
        return s.layers * one_layer
    return s.layers * tokens * s.hidden * residual_bytes + one_layer


def _head_bytes(s: Shape, completion_tokens: int, value_bytes: int, backward: bool) -> float:
    """TRL's fused LM head: one projection tile and fp32 per-token statistics (+ fp32 hidden-state grads)."""
    tile = min(completion_tokens, HEAD_TILE[0]) * min(s.vocab, HEAD_TILE[1]) * value_bytes
    stats = 8 * completion_tokens * 4
    return tile + stats + (completion_tokens * s.hidden * 4 if backward else 0)


def plan_arm(cfg: Any, prompt_tokens: int = PROMPT_TOKENS) -> ArmPlan:
    """The memory plan and time estimate of one typed, validated job config."""
    from alignpro.methods.rl import training_dtype
    from alignpro.models.assets import resolve_dtype

    m = cfg.method
    device = "cpu" if cfg.device == "cpu" else "cuda"
    P, F, R, T = cfg.prompter, cfg.frozen, cfg.reward, cfg.trainer
    policy = m.trains
    frozen_local = F.backend == "hf"
    uses_frozen = m.needs_frozen or policy == "frozen"
    x = prompt_tokens
    eval_new = cfg.eval.max_new_tokens or F.max_new_tokens
    meta = text_tokens(P.meta_prompt.replace("[PROMPT]", ""))
    rewrite_len = P.max_new_tokens + (x if P.rewrite == "append" else 0)  # x′: the rewrite (x + it for append)

    shapes: dict[str, Shape] = {}
    if m.uses_prompter:
        shapes["prompter"] = model_shape(P, "prompter", train=policy == "prompter")
    if uses_frozen and frozen_local:
        shapes["frozen"] = model_shape(F, "frozen", train=policy == "frozen")
    shapes["reward"] = model_shape(R, "reward")

    def dtype_bytes(node: Any) -> int:
        return nbytes(resolve_dtype(node.get("dtype", "auto") or "auto", device))

    persistent: list[tuple[str, float]] = []
    policy_bytes = compute_bytes = kv_bytes = 0
    if policy:
        node, s = cfg[policy], shapes[policy]
        policy_bytes = nbytes(training_dtype(node.dtype, device, node.lora))
        compute_bytes = 2 if device == "cuda" and T.bf16 else policy_bytes  # TRL's autocast (bf16=True on GPU)
        # fp32 master weights keep an fp32 residual stream, and RoPE's cos/sin follow its dtype: the cached keys
        # come out fp32 under autocast too, so the policy's cache is counted at its weights' size
        kv_bytes = policy_bytes if s.trainable == s.params else compute_bytes
        full = s.trainable == s.params
        if full:
            persistent.append((f"{policy} weights (fp32 master, full fine-tuning)", s.params * policy_bytes))
        else:
            persistent.append((f"{policy} weights ({_dtype_name(policy_bytes)}, frozen LoRA base)",
                               s.params * policy_bytes))
            persistent.append(("LoRA adapter (fp32)", s.trainable * 4))
        persistent.append(("AdamW moments (2 x fp32)", 2 * s.trainable * 4))
        if full:
            persistent.append(("rho_ref (fp32 copy)", s.params * policy_bytes))
    if m.uses_prompter and policy != "prompter":
        persistent.append(("prompter weights", shapes["prompter"].params * dtype_bytes(P)))
    if m.needs_frozen and frozen_local:
        persistent.append(("frozen weights", shapes["frozen"].params * dtype_bytes(F)))
    r_bytes = dtype_bytes(R) if R.kind == "hf_classifier" else 4  # the BT encoder runs in fp32
    persistent.append(("reward model weights", shapes["reward"].params * r_bytes))

    rs = shapes["reward"]
    rm_batch = R.get("batch_size") or 8
    if R.kind == "hf_classifier":
        rm_tokens = min(R.max_length, TEMPLATE_TOKENS + x + max(F.max_new_tokens, eval_new))
    else:
        rm_tokens = min(R.max_length, max(x, F.max_new_tokens, eval_new))
    checks: list[ContextCheck] = []
    stages: list[Stage] = []

    def rm_forward(rows: int) -> float:
        return min(rm_batch, rows) * rm_tokens * rs.forward_values_per_token * r_bytes

    def kv(role: str, rows: int, tokens: int, value_bytes: int) -> float:
        return rows * tokens * shapes[role].kv_bytes_per_token(value_bytes)

    f_bytes = dtype_bytes(F)
    p_bytes = dtype_bytes(P)
    times: dict[str, float] = {}
    steps: dict[str, int] = {}
    notes: list[str] = []
    if policy:
        s = shapes[policy]
        node = cfg[policy]
        new = node.max_new_tokens
        prompt = TEMPLATE_TOKENS + (meta if policy == "prompter" else 0) + x
        seq = prompt + new
        checks.append(ContextCheck("rollout", node.name, s.context or 10**9, prompt - x, new, x))
        # TRL generates per_device_train_batch_size x steps_per_generation rollouts at once and runs its log-prob
        # and loss passes per_device_train_batch_size rows at a time: alignpro.methods.rl sets them to the whole batch
        # and
        # one; trainer.extra may change them (a smaller pass with gradient accumulation saves activations)
        rows, accumulate, per_generation = micro_batches(T)
        gen_rows = rows * per_generation
        stages.append(Stage("rollout", [(f"KV {policy} {gen_rows} x {seq} tok", kv(policy, gen_rows, seq,
                                                                                    kv_bytes))]))
        if policy == "prompter":
            if frozen_local:
                fb = min(F.batch_size, gen_rows)
                fseq = TEMPLATE_TOKENS + rewrite_len + F.max_new_tokens
                stages.append(Stage("frozen answers", [(f"KV frozen {fb} x {fseq} tok", kv("frozen", fb, fseq,
                                                                                            f_bytes))]))
                checks.append(ContextCheck("frozen answers", F.name, shapes["frozen"].context or 10**9,
                                           TEMPLATE_TOKENS + P.max_new_tokens, F.max_new_tokens,
                                           x if P.rewrite == "append" else 0))
        completion = rows * new
        # The policy's and rho_ref's log-prob passes, then (in the reward function) the RM: one after another.
        scoring = [(f"log-prob forward {rows} x {seq} tok + fused LM head",
                    rows * seq * s.forward_values_per_token * compute_bytes
                    + _head_bytes(s, completion, compute_bytes, backward=False)),
                   (f"RM forward {min(rm_batch, gen_rows)} x {rm_tokens} tok", rm_forward(gen_rows))]
        stages.append(Stage("scoring", scoring, sequential=True))
        residual = policy_bytes if s.trainable == s.params else compute_bytes
        update = [("gradients (fp32)", s.trainable * 4),
                  (f"activations {rows} x {seq} tok" + (" (checkpointed)" if T.gradient_checkpointing else ""),
                   _activation_bytes(s, rows * seq, compute_bytes, residual, T.gradient_checkpointing)),
                  ("fused LM head + hidden grads", _head_bytes(s, completion, compute_bytes, backward=True))]
        stages.append(Stage("update", update))
        updates, generations = trained_steps(cfg)
        steps = {"updates": updates, "generations": generations}
        if T.max_steps == "paper" and cfg.dataset.name in APPROXIMATE_TRAIN_PROMPTS:
            notes.append(f"max_steps=paper on {cfg.dataset.name}: {APPROXIMATE_TRAIN_PROMPTS[cfg.dataset.name]}, "
                         "so its budget is approximate")
        gen_s = new * decode_ms(s) / 1000
        if policy == "prompter" and frozen_local:
            gen_s += math.ceil(gen_rows / F.batch_size) * F.max_new_tokens * decode_ms(shapes["frozen"]) / 1000
        score_s = 2 * forward_s(s, gen_rows * seq) + forward_s(rs, gen_rows * rm_tokens)
        times["generation"] = generations * gen_s
        times["log-probs + reward"] = generations * score_s
        times["updates"] = updates * accumulate * train_s(s, rows * seq)

    # Evaluation: every arm (alignpro/report/evaluate.py): rewrite (prompter arms), answer x′ (and x: answer_shift),
    # score.
    n = cfg.eval.n_prompts * cfg.eval.samples_per_prompt
    ev: list[tuple[str, float]] = []
    eval_s = 0.0
    answerer = "frozen" if policy != "frozen" else policy
    if m.uses_prompter:
        ps = shapes["prompter"]
        pb = min(P.batch_size, n)
        pseq = TEMPLATE_TOKENS + meta + x + P.max_new_tokens
        ev.append((f"KV prompter {pb} x {pseq} tok", kv("prompter", pb, pseq, kv_bytes or p_bytes)))
        eval_s += math.ceil(n / P.batch_size) * P.max_new_tokens * decode_ms(ps) / 1000
        if policy != "prompter":
            checks.append(ContextCheck("rewrite", P.name, ps.context or 10**9, TEMPLATE_TOKENS + meta,
                                       P.max_new_tokens, x))
    if answerer in shapes:
        fb = min(F.batch_size, n)
        longest = rewrite_len if m.uses_prompter else 0
        longest = max(longest, x if (not m.uses_prompter or cfg.eval.answer_shift) else 0)
        fseq = TEMPLATE_TOKENS + longest + eval_new
        a_bytes = kv_bytes if policy == "frozen" else f_bytes
        ev.append((f"KV {answerer} {fb} x {fseq} tok", kv(answerer, fb, fseq, a_bytes)))
        calls = 1 + (1 if m.uses_prompter and cfg.eval.answer_shift else 0)
        eval_s += calls * math.ceil(n / F.batch_size) * eval_new * decode_ms(shapes[answerer]) / 1000
        if not m.uses_prompter or cfg.eval.answer_shift:
            checks.append(ContextCheck("answer x", F.name, shapes[answerer].context or 10**9, TEMPLATE_TOKENS,
                                       eval_new, x))
    ev.append((f"RM forward {min(rm_batch, n)} x {rm_tokens} tok", rm_forward(n)))
    answer_len = max(F.max_new_tokens, eval_new)
    if R.kind == "hf_classifier":  # [user x, assistant y] in the RM's template, cut from the left at max_length
        checks.append(ContextCheck("score (x, y)", R.name, min(R.max_length, rs.context or R.max_length),
                                   TEMPLATE_TOKENS, answer_len, x))
    else:  # the BT encoder embeds x and y apart, each cut at max_length
        checks.append(ContextCheck("score x, y apart", R.name, min(R.max_length, rs.context or R.max_length), 0,
                                   0, max(x, answer_len)))
    stages.append(Stage("evaluation", ev, sequential=True))  # rewrite, answer, score: one after another
    times["evaluation"] = eval_s + forward_s(rs, n * rm_tokens)
    hours = sum(times.values()) / 3600 if device == "cuda" else None
    models = {"prompter": P.name if m.uses_prompter else "-", "frozen": F.name if uses_frozen else "-",
              "reward": R.name}
    key = " ".join([m.name, *(f"{k}={v}" for k, v in models.items() if v != "-")])
    return ArmPlan(key, m.name, models, persistent, stages, checks, shapes, hours, times, steps, notes)


def _dtype_name(n: int) -> str:
    return {2: "bf16", 4: "fp32"}.get(n, f"{n}-byte")
