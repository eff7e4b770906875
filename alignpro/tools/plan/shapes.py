"""Each model at full size on the meta device (no memory, no weights) from its ``config.json``: the shipped copy for a
paper model (``alignpro/models/paper_configs``), else ``AutoConfig.from_pretrained(model_id)`` (the hub or a local
folder). The trained model gets the project's own LoRA config (:func:`alignpro.methods.rl.lora_config`) through peft, so
trainable parameters and adapted module types are counted, not computed. Also here: whether a prompt and its new
tokens fit a model's context (:class:`ContextCheck`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alignpro.run.errors import BadInput

PAPER_MODELS = Path(__file__).parents[2] / "models" / "paper_configs"


@dataclass(frozen=True)
class Shape:
    """One model at full size, counted on the meta device."""

    model_id: str
    architecture: str
    params: int
    trainable: int  # LoRA: the adapter's parameters; full fine-tuning: all; a fixed model: 0
    lora_modules: tuple[tuple[str, int], ...]  # (module name, layers that got an adapter)
    layers: int
    hidden: int
    intermediate: int
    kv_heads: int
    head_dim: int
    vocab: int
    context: int | None  # max_position_embeddings
    lora_inputs: int  # per layer: the summed input widths of its adapted linears (their dropout keeps a copy)

    def kv_bytes_per_token(self, nbytes: int = 2) -> int:
        """K and V of every layer for one token."""
        return 2 * self.layers * self.kv_heads * self.head_dim * nbytes

    @property
    def forward_values_per_token(self) -> int:
        """What a no-grad forward holds at once per token, at its widest point: the MLP's gate, up and their
        product beside the residual stream and the normed input."""
        return 2 * self.hidden + 3 * self.intermediate

    @property
    def layer_values_per_token(self) -> int:
        """Activations one layer keeps per token for its backward pass (see alignpro/tools/plan/memory.py)."""
        return 6 * self.hidden + 2 * self.kv_heads * self.head_dim + 4 * self.intermediate + self.lora_inputs


def shipped_config_dir(model_id: str | None) -> Path | None:
    """The shipped ``config.json`` folder of a paper model (hub id, ``/`` → ``__``), or None."""
    if not model_id:
        return None
    d = PAPER_MODELS / model_id.replace("/", "__")
    return d if (d / "config.json").is_file() else None


def hf_config(source: str, model_id: str | None, role: str) -> Any:
    """The model's transformers config: the shipped copy for a paper model, else from its hub id or folder."""
    from transformers import AutoConfig

    from alignpro.models.assets import resolve_model

    if source in ("miniature", "random"):  # a paper model shrunk, or at full size with random weights: no build
        from alignpro.models import paper_models

        fields = dict(paper_models.shrunk_config(model_id, paper_models.MINIATURE if source == "miniature" else None))
        return AutoConfig.for_model(fields.pop("model_type"), **fields)
    shipped = shipped_config_dir(model_id) if source == "hub" else None
    path = str(shipped) if shipped else resolve_model(source, model_id, role=role)
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInput(f"{role}.model_id={model_id!r}: its config.json cannot be read ({first}); the plan needs the "
                       "hub, a cached copy or a local folder for a model that is not one of the paper's "
                       f"({', '.join(p.name.replace('__', '/') for p in sorted(PAPER_MODELS.iterdir()) if p.is_dir())})"
                       ) from None


def _quiet() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


@cache
def _shape(source: str, model_id: str | None, role: str, kind: str, lora_json: str) -> Shape:
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    _quiet()
    cfg = hf_config(source, model_id, role)
    cls = {"causal_lm": AutoModelForCausalLM, "classifier": AutoModelForSequenceClassification,
           "encoder": AutoModel}[kind]
    with torch.device("meta"):  # full size, no memory: shapes only
        model = cls.from_config(cfg)
    params = sum(p.numel() for p in model.parameters())
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    layers = text.num_hidden_layers
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    lora = json.loads(lora_json)
    trainable, modules, lora_inputs = 0, (), 0
    if lora == "full":
        trainable = params
    elif lora is not None:
        from peft import get_peft_model
        from peft.tuners.lora import LoraLayer

        from alignpro.methods.rl import lora_config

        wrapped = get_peft_model(model, lora_config(lora))
        trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
        adapted = [(name.rsplit(".", 1)[-1], m) for name, m in wrapped.named_modules() if isinstance(m, LoraLayer)]
        counts: dict[str, int] = {}
        for name, _ in adapted:
            counts[name] = counts.get(name, 0) + 1
        modules = tuple(sorted(counts.items()))
        lora_inputs = sum(m.in_features for _, m in adapted) // max(layers, 1)
    return Shape(model_id=str(model_id or source), architecture=type(model).__name__, params=params,
                 trainable=trainable, lora_modules=modules, layers=layers, hidden=text.hidden_size,
                 intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
                 kv_heads=getattr(text, "num_key_value_heads", None) or heads, head_dim=head_dim,
                 vocab=text.vocab_size, context=getattr(text, "max_position_embeddings", None),
                 lora_inputs=lora_inputs)


def model_shape(node: Any, role: str, train: bool = False) -> Shape:
    """Shape of the ``prompter``, ``frozen`` or ``reward`` config node; ``train``: as the trained policy (its
    ``lora`` applied through peft, or every parameter trainable for full fine-tuning)."""
    from alignpro.config.rules import lora_options

    if role == "reward":
        kind = "classifier" if node.kind == "hf_classifier" else "encoder"
    else:
        kind = "causal_lm"
    lora = None
    if train:
        opts = lora_options(node.get("lora"))
        lora = "full" if opts is None else opts
    return _shape(str(node.source), node.get("model_id"), role, kind, json.dumps(lora, sort_keys=True))


@dataclass
class ContextCheck:
    """Does ``prompt + new tokens`` fit one model's context at one stage?"""

    stage: str
    model: str
    context: int  # tokens the model (or reward.max_length) allows
    overhead: int  # template (+ meta-prompt, + a rewrite) tokens around x
    new_tokens: int
    prompt_tokens: int  # the assumed length of x

    @property
    def x_budget(self) -> int:
        """The longest x that fits uncut."""
        return self.context - self.overhead - self.new_tokens

    @property
    def status(self) -> str:
        if self.context - self.new_tokens <= 0:
            return f"never fits: {self.new_tokens} new tokens >= context {self.context}"
        if self.x_budget < self.prompt_tokens:
            return f"x cut from {self.prompt_tokens} to {max(self.x_budget, 0)} tokens"
        return "ok"
