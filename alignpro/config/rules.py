"""How a config key declares its rule, and how a composed config is typed and checked against the schema.

The schema (:mod:`alignpro.config.schema`) declares each key as a dataclass field made by :func:`key` (or
:func:`positive`, :func:`non_negative`, :func:`above_zero`): its default plus its choices or a predicate and the
text a message shows. :func:`typed` merges a composed config onto a schema dataclass (OmegaConf structured
configs), so every key has a declared type, an unknown key is refused and each key a YAML file leaves out gets its
default; :func:`check` then applies each field's choices and range and each group's own ``rules``.
:mod:`alignpro.config.validate` adds the rules that span groups. Every message has one form:
``<group>.<key>=<value> is invalid: <what is valid>``. Torch-free, like the schema.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from alignpro.run.errors import BadInput

# Defaults for keys a ``lora`` dict leaves out, so ``prompter.lora={r: 8}`` is enough on the command line.
# alpha = 2r (the common ratio; the adapter's scale alpha/r stays 2 whatever r); "all-linear" = every linear layer of
# the transformer blocks (attention and MLP), not the output head.
LORA_DEFAULTS: dict[str, Any] = {"r": 16, "alpha": None, "dropout": 0.05, "target_modules": "all-linear"}


class ConfigError(BadInput, ValueError):
    """A config value is invalid; the message names the key, the value and what is valid."""


def require(ok: bool, key: str, value: Any, valid: str) -> None:
    """Raise :class:`ConfigError` in the one message form unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {valid}")


def integer_at_least(v: Any, low: int) -> bool:
    """An int (not a bool) ≥ ``low``."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def number_above(v: Any, low: float, strict: bool = True) -> bool:
    """A finite int or float (not a bool) > ``low`` (≥ with ``strict=False``)."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return ok and (v > low if strict else v >= low)


def lora_options(lora: Any) -> dict[str, Any] | None:
    """A model config's ``lora`` value, checked and completed: ``None`` for full fine-tuning (``null``/``false``),
    else the options with defaults filled in (``alpha`` = 2r). Raises ``ValueError`` naming the bad value."""
    if lora is None or lora is False:
        return None
    if OmegaConf.is_config(lora):
        lora = OmegaConf.to_container(lora, resolve=True)
    if not isinstance(lora, dict):
        raise ValueError(f"lora={lora!r} is invalid: null (full fine-tuning) or a mapping such as "
                         "{r: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}")
    opts = {**LORA_DEFAULTS, **lora}
    r, alpha, dropout = opts["r"], opts["alpha"], opts["dropout"]
    if not integer_at_least(r, 1):
        raise ValueError(f"lora.r={r!r} is invalid: the adapter rank must be an integer > 0 (e.g. 16)")
    alpha = 2 * r if alpha is None else alpha
    if not (isinstance(alpha, (int, float)) and alpha > 0):
        raise ValueError(f"lora.alpha={alpha!r} is invalid: must be > 0 (null = 2 * r)")
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"lora.dropout={dropout!r} is invalid: must be in [0, 1)")
    opts["alpha"] = alpha
    extra = sorted(set(opts) - set(LORA_DEFAULTS))
    if extra:  # passed to peft verbatim: only then is peft (and torch) imported, to name the fields it takes
        from peft import LoraConfig

        fields = {f.name for f in dataclasses.fields(LoraConfig)}
        unknown = [k for k in extra if k not in fields]
        if unknown:
            raise ValueError(f"lora.{unknown[0]} is not a LoRA option; valid keys: r, alpha, dropout, "
                             "target_modules, or any peft.LoraConfig field (e.g. use_rslora, modules_to_save)")
    return opts


# -- a key's declaration: a dataclass field with its rule ----------------------------------------------------------

def key(default: Any = MISSING, *, choices: tuple | None = None, ok: Any = None, valid: str | None = None) -> Any:
    """A dataclass field with its rule: ``choices`` (the value is one of them) or ``ok`` (a predicate), and the
    ``valid`` text a message shows. ``MISSING`` (``???``) = the group's YAML files must set it."""
    if choices is not None and valid is None:
        valid = "valid: " + ", ".join(map(str, choices))
    factory = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(**factory, metadata={"choices": choices, "ok": ok, "valid": valid})


def positive(default: Any = MISSING) -> Any:
    """A key holding an integer > 0."""
    return key(default, ok=lambda v: integer_at_least(v, 1), valid="must be an integer > 0")


def non_negative(default: Any = MISSING) -> Any:
    """A key holding an integer ≥ 0."""
    return key(default, ok=lambda v: integer_at_least(v, 0), valid="must be an integer ≥ 0")


def above_zero(default: Any = MISSING) -> Any:
    """A key holding a number > 0."""
    return key(default, ok=lambda v: number_above(v, 0), valid="must be a number > 0")


# -- typing and checking a composed config -------------------------------------------------------------------------

_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _field_at(schema: type, path: list[str]) -> tuple[dataclasses.Field | None, Any]:
    """The field and type hint at a dotted path below ``schema`` (None when the path leaves the schema)."""
    f, hint = None, schema
    for part in path:
        cls = _dataclass_in(hint)
        if cls is None:
            return None, None
        f = {x.name: x for x in dataclasses.fields(cls)}.get(part)
        if f is None:
            return None, None
        hint = typing.get_type_hints(cls)[part]
    return f, hint


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a type hint names, ``Optional[...]`` unwrapped."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _what_is_valid(f: dataclasses.Field | None, hint: Any) -> str:
    if f is not None and f.metadata.get("valid"):
        return f.metadata["valid"]
    base = next((a for a in (hint, *typing.get_args(hint)) if a in _TYPE_WORDS), None)
    return f"must be {_TYPE_WORDS[base]}" if base else "see the group's YAML file for the expected value"


def typed(cfg: Any, schema: type, prefix: str = "") -> DictConfig:
    """``cfg`` merged onto ``schema`` (a structured config): every key typed and present. A value of the wrong type
    or a key the schema does not know raises :class:`ConfigError` naming it."""
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), cfg)
    except ConfigKeyError as err:
        _, hint = _field_at(schema, str(err.full_key).split(".")[:-1])  # the key's group ([] = schema itself)
        cls = _dataclass_in(hint)
        names = ", ".join(x.name for x in dataclasses.fields(cls)) if cls else ""
        raise ConfigError(f"{prefix}{err.full_key} is not a config key; valid keys here: {names}") from None
    except ValidationError as err:
        f, hint = _field_at(schema, str(err.full_key).split("."))
        raise ConfigError(f"{prefix}{err.full_key}={err.value!r} is invalid: {_what_is_valid(f, hint)}") from None
    except OmegaConfBaseException as err:  # e.g. a mapping given where a value goes
        raise ConfigError(f"{prefix}{err.full_key} is invalid: {err.msg.splitlines()[0]}") from None


def check(node: DictConfig, schema: type, prefix: str = "") -> None:
    """Apply each field's choices and range, then the group's ``rules``, to a :func:`typed` node (depth first,
    in field order). A ``???`` value is left to the rule or factory that needs it; ``null`` passes an optional key."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if OmegaConf.is_missing(node, f.name):
            continue
        value, where = node[f.name], f"{prefix}{f.name}"
        sub = _dataclass_in(hints[f.name])
        if sub is not None:
            if value is not None:
                check(value, sub, where + ".")
            continue
        choices, ok = f.metadata.get("choices"), f.metadata.get("ok")
        if choices is not None:
            require(any(value is c or (value == c and type(value) is type(c)) for c in choices), where, value,
                    f.metadata["valid"])
        if ok is not None and not (value is None and f.default is None):
            require(ok(value), where, value, f.metadata["valid"])
    rules = getattr(schema, "rules", None)
    if rules is not None:
        rules(node, prefix)
