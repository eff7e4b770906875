"""The prompter ρ(x′|x): a small LM that rewrites the user prompt x into x′ (the model Align-Pro trains).

The paper drives an off-the-shelf instruct model with a fixed meta-prompt (Appendix C.1, wording and grammar kept
verbatim) placed in the prompter's user turn; its chat template does the rest. ρ_ref, the anchor of the KL term in
eq. 9, is this same model before training: TRL keeps a frozen copy (full fine-tuning), or, with ``prompter.lora``
set, trains a LoRA adapter and computes ρ_ref with the adapter disabled (alignpro/methods/rl/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alignpro.config.schema import PLACEHOLDER, REWRITES, PrompterConfig
from alignpro.models.assets import load_causal_lm, resolve_model
from alignpro.models.chat import chat
from alignpro.models.generation import GenerationEngine, generate_chat
from alignpro.models.sampling import PromptCuts, Sampling

# Paper, Appendix C.1 (exact string; "[PROMPT]" is replaced by the user prompt x).
PAPER_META_PROMPT = (
    "Rephrase the given text in detail and precise so that it is fed to another language model. "
    "The given text is '[PROMPT]'"
)
# What the prompter writes (``prompter.rewrite``, set with the meta-prompt): ``full`` = x′ is its whole output (the
# paper); ``append`` = it writes an instruction and x′ = x followed by it, so x′ always keeps the user's request.


def meta_prompt_text(x: str, meta_prompt: str = PAPER_META_PROMPT) -> str:
    """Fill the meta-prompt with x. ``str.replace`` rather than ``format``: user prompts may contain braces."""
    return meta_prompt.replace(PLACEHOLDER, x)


def compose_rewrite(x: str, generated: str, mode: str = "full") -> str:
    """x′ from the prompter's output: the output itself (``full``) or ``x`` followed by it (``append``)."""
    if mode == "full":
        return generated
    if mode == "append":
        return f"{x} {generated.strip()}".strip()
    raise ValueError(f"prompter.rewrite='{mode}' is unknown; valid: {', '.join(REWRITES)}")


def rewrite_conversation(x: str, meta_prompt: str = PAPER_META_PROMPT, system: str | None = None) -> list[dict]:
    """The prompter's input for x: one user turn holding the filled meta-prompt (optionally a system turn)."""
    return chat(meta_prompt_text(x, meta_prompt), system)


@dataclass
class Prompter:
    """A loaded prompter: rewrites prompts for evaluation (training rollouts are TRL's own generation)."""

    model: Any
    tokenizer: Any
    meta_prompt: str
    system: str | None = None
    batch_size: int = 8
    engine: GenerationEngine = field(default_factory=GenerationEngine)  # the `generation` config block
    mode: str = "full"  # prompter.rewrite: full | append (see compose_rewrite)
    cuts: PromptCuts = field(default_factory=PromptCuts)  # inputs cut to fit the context (generate_chat)

    def generate(self, prompts: list[str], sampling: Sampling, desc: str | None = None) -> list[str]:
        """The prompter's raw outputs for each x (for ``append``: the instruction alone)."""
        convs = [rewrite_conversation(x, self.meta_prompt, self.system) for x in prompts]
        return generate_chat(self.model, self.tokenizer, convs, sampling, self.batch_size, desc, self.engine,
                             cuts=self.cuts)

    def rewrite(self, prompts: list[str], sampling: Sampling, desc: str | None = None) -> list[str]:
        """x′ for each x."""
        outs = self.generate(prompts, sampling, desc)
        return [compose_rewrite(x, g, self.mode) for x, g in zip(prompts, outs, strict=True)]


def prompter_path(cfg: PrompterConfig) -> str:
    """Where the prompter's initial weights are."""
    return resolve_model(cfg.source, cfg.model_id, role="prompter")


def load_prompter(cfg: PrompterConfig, path: str | None = None, device: str = "cpu",
                  engine: GenerationEngine | None = None) -> Prompter:
    """Load a prompter from ``path`` (a trained checkpoint) or from its config's source (ρ_ref).

    ``path`` may hold full weights or, after a LoRA run, only the adapter and tokenizer (``run_dir/prompter``):
    transformers' PEFT integration then loads the base model named in ``adapter_config.json`` and attaches the
    adapter, unmerged. ``engine`` picks the generation engine of its evaluation rewrites."""
    model, tok = load_causal_lm(path or prompter_path(cfg), cfg.dtype, device)
    return Prompter(model, tok, cfg.meta_prompt, cfg.system, cfg.batch_size, engine or GenerationEngine(),
                    cfg.rewrite)
