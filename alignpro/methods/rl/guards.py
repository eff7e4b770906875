"""The two edges (docs/faults.md) :func:`alignpro.methods.rl.trainer.build_trainer` sets up on every TRL trainer,
by wrapping its private methods through :mod:`alignpro.methods.rl.trl_internals`: a policy prompt longer than the
policy's context allows beside ``max_completion_length`` is cut from the left like every generation prompt
(:func:`fit_policy_prompts`; TRL 1.16's RLOO/GRPO have no ``max_prompt_length``), and a non-finite per-token
log-prob stops the run with the rollouts it came from (:func:`guard_log_probs`).
"""

from __future__ import annotations

from typing import Any

import torch

from alignpro.methods.rl import trl_internals
from alignpro.models.sampling import fit_prompts, prompt_budget
from alignpro.run.directory import RunDir
from alignpro.run.numerics import shown, stop


def guard_log_probs(trainer: Any, run_dir: RunDir | None = None) -> None:
    """Check every per-token log-prob TRL computes (the policy's and ρ_ref's scoring passes, then the loss pass)
    for NaN/inf on the completion tokens, and stop at the first bad one with the rollouts it came from.

    Why here: this one method is where TRL 1.16's RLOO and GRPO turn logits into log-probs, each pass calls it,
    and its inputs carry the token ids and the mask (the completion's part of ``attention_mask``). Downstream the
    values are gone: a NaN KL makes the reward NaN, which TRL reads as unscorable (advantage zeroed), and the
    logged ``kl`` mean drops it, so the run would go on silently. The scoring passes run before the reward
    function, so the rollouts are saved from the token ids here rather than found in ``samples.jsonl``."""

    def wrap(forward):
        def checked(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
            out = forward(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
            mask = attention_mask[:, -logits_to_keep:].bool()
            bad = ~torch.isfinite(out[0].detach()) & mask
            if bool(bad.any()):
                _stop_on_log_probs(trainer, run_dir, model, input_ids, mask, logits_to_keep, out[0].detach(), bad)
            return out

        return checked

    trl_internals.wrap_log_probs(trainer, wrap)


def _stop_on_log_probs(trainer, run_dir, model, input_ids, mask, logits_to_keep, logps, bad) -> None:
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


def fit_policy_prompts(trainer: Any, max_new_tokens: int) -> None:
    """Cut the policy's prompts to its context, the same rule as :func:`alignpro.models.generation.generate_chat`: from
    the left, keeping a leading BOS, to ``context − max_completion_length`` tokens. TRL 1.16 tokenizes the prompts
    in one method and uses those ids for the rollout and every log-prob pass, so cutting its output cuts them
    everywhere. The step's ``truncated_prompts`` is the share of its rollouts whose prompt was cut."""
    budget = prompt_budget(trainer.model, max_new_tokens)
    if budget is None:
        return
    bos = getattr(trainer.processing_class, "bos_token_id", None)

    def wrap(tokenize):
        def cut(prompts):
            prompt_ids, images, multimodal = tokenize(prompts)
            kept, n_cut = fit_prompts(prompt_ids, budget, bos)
            if n_cut and multimodal:  # per-token image fields would no longer line up with the ids
                raise ValueError("a multimodal prompt is longer than the policy's context; it cannot be cut")
            trl_internals.log_metric(trainer, "truncated_prompts", n_cut / max(len(prompt_ids), 1))
            return kept, images, multimodal

        return cut

    trl_internals.wrap_prompt_tokenizer(trainer, wrap)
