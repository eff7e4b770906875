"""A trained prompter outside the run that trained it: the run's folder ``prompter/`` (full weights, or a LoRA adapter
on its base) and the settings it was trained to rewrite with: the meta-prompt, the system turn, the token limit, how x
and the prompter's output are joined (``prompter.rewrite``), and the evaluation's sampling. Used by
``python -m alignpro.rewrite`` and ``python -m alignpro.serve``.

The folder stands on its own: :func:`write_card` puts beside the weights ``alignpro.json`` (those settings, the base
model by hub id and by the path the adapter names, the run's resolved config, its held-out result once evaluated) and
a filled model card, ``README.md``. :func:`load_trained` takes that folder, wherever it was copied, or the run dir
holding it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from alignpro.config.trained import ARTIFACT, CARD, trained_source
from alignpro.models.sampling import Sampling
from alignpro.run.errors import BadInput


@dataclass
class TrainedPrompter:
    """A run's trained prompter, not loaded yet: :meth:`load` builds it."""

    run_dir: Path
    cfg: DictConfig  # the run's typed config (alignpro.config.schema.Config)
    folder: Path  # <run dir>/prompter

    def load(self, device: str | None = None):
        """The :class:`alignpro.models.prompter.Prompter` with the run's rewrite settings, on ``device`` (default: the
        run's ``device`` key, ``auto`` = CUDA when one is visible)."""
        from alignpro.models.assets import pick_device
        from alignpro.models.generation import GenerationEngine
        from alignpro.models.prompter import load_prompter

        return load_prompter(self.cfg.prompter, path=str(self.folder), device=pick_device(device or self.cfg.device),
                             engine=GenerationEngine.from_config(self.cfg.generation))

    def rewrite_sampling(self, greedy: bool = False) -> Sampling:
        """How the run's evaluation sampled rewrites (``eval.rewrite_sampling``, else ``eval.sampling``), at the
        prompter's token limit; ``greedy`` takes the argmax instead."""
        ev = self.cfg.eval
        sampling = Sampling.from_config(ev.rewrite_sampling or ev.sampling, self.cfg.prompter.max_new_tokens)
        return Sampling(sampling.max_new_tokens, temperature=0) if greedy else sampling




def load_trained(run_dir: str | Path) -> TrainedPrompter:
    """The trained prompter of a finished ``method=alignpro`` job, given its run dir, its ``prompter/`` folder (a
    copy of it too) or its W&B artifact (``wandb:<entity>/<project>/prompter-<run id>:<version>``); or
    :class:`BadInput` naming what is missing."""
    from omegaconf import OmegaConf

    from alignpro.config.rules import typed
    from alignpro.config.schema import Config

    if str(run_dir).startswith(ARTIFACT):
        run_dir = from_artifact(str(run_dir))
    config, folder, card = trained_source(run_dir)
    where = folder / CARD if card and not (Path(run_dir) / "config.yaml").is_file() else f"{run_dir}/config.yaml"
    return TrainedPrompter(Path(run_dir), typed(OmegaConf.create(config), Config), check_base(folder, card, where))


def from_artifact(ref: str) -> Path:
    """The folder of a W&B model artifact, downloaded into the cache (``$ALIGNPRO_CACHE/artifacts``). Offline, or
    with W&B out of reach, one line says so and names what works instead: the run dir or its ``prompter/`` folder,
    which hold the same files."""
    import os

    from alignpro.models.cache import cache_dir

    name = ref.removeprefix(ARTIFACT)
    mode = os.environ.get("WANDB_MODE", "").lower()
    instead = "give the run dir or its prompter/ folder instead (the artifact holds the same files)"
    if mode in ("offline", "disabled", "dryrun"):
        raise BadInput(f"{ref} is a W&B artifact, and W&B is {mode} here (WANDB_MODE); {instead}")
    import wandb

    try:
        art = wandb.Api(timeout=30).artifact(name, type="model")
        return Path(art.download(root=str(cache_dir() / "artifacts" / name.replace("/", "--").replace(":", "--"))))
    except (wandb.errors.Error, ValueError, OSError) as err:
        raise BadInput(f"{ref}: W&B could not give this model artifact ({type(err).__name__}: "
                       f"{' '.join(str(err).split())[:200]}); check the reference (entity/project/name:version) "
                       f"and WANDB_API_KEY, or {instead}") from None


def check_base(folder: Path, card: dict, config: str | Path | None = None) -> Path:
    """``folder``, once the base model its LoRA adapter names is known to be there; else :class:`BadInput` saying
    where the base came from and how to get it back."""
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if base and base.startswith("/") and not Path(base).exists():
            origin = card.get("base", {})
            how = (f"it is rho_sft, trained on {origin.get('hub_id')} by the run's config" if origin.get("sft") else
                   f"it is {origin.get('hub_id')}" if origin.get("hub_id") else "")
            raise BadInput(f"the prompter's base model {base} is gone (it lives in the cache, ALIGNPRO_CACHE"
                           f"{'; ' + how if how else ''}); rerun the job's config to rebuild it: "
                           f"{config or folder / CARD}")
    return folder


def write_card(folder: Path, config: dict, metrics: dict | None = None) -> dict:
    """``alignpro.json`` and the model card ``README.md`` in a saved prompter's ``folder`` (replacing PEFT's empty
    template), from the run's resolved, redacted ``config``; with ``metrics``, its held-out result too."""
    from alignpro.run.directory import write_atomic

    p, ev = config["prompter"], config["eval"]
    adapter = folder / "adapter_config.json"
    base_path = json.loads(adapter.read_text()).get("base_model_name_or_path") if adapter.is_file() else None
    card = {
        "format": 1,
        "rewrite": {"meta_prompt": p["meta_prompt"], "system": p["system"], "mode": p["rewrite"],
                    "max_new_tokens": p["max_new_tokens"], "sampling": ev["rewrite_sampling"] or ev["sampling"]},
        "base": {"hub_id": p.get("model_id"), "path": base_path, "source": p["source"],
                 "sft": bool(config.get("sft", {}).get("enabled"))},
        "trained": {"method": config["method"]["name"], "lam": config["lam"], "seed": config["seed"],
                    "dataset": config["dataset"]["name"], "frozen": config["frozen"]["name"],
                    "reward": config["reward"]["name"], "steps": config["trainer"]["max_steps"]},
        "heldout": None if metrics is None else {k: metrics.get(k) for k in
                                                 ("reward_mean", "reward_ci_low", "reward_ci_high", "n")},
        "config": config,
    }
    write_atomic(folder / CARD, json.dumps(card, indent=2, default=str))
    write_atomic(folder / "README.md", model_card(card))
    return card


def model_card(card: dict) -> str:
    """The prompter's model card: what it is, how to use it, its rewrite settings and how it was trained."""
    b, t, r, h = card["base"], card["trained"], card["rewrite"], card["heldout"]
    start = b["hub_id"] or f"source {b['source']}"
    base = ("full weights, in this folder (trained from " + start + ")" if not b["path"] else
            f"LoRA adapter on rho_sft, a supervised prompter trained on {start} from the run's instruction menu "
            f"(at {b['path']})" if b["sft"] else f"LoRA adapter on {start} (at {b['path']})")
    joined = ("x' = x + ' ' + the prompter's output" if r["mode"] == "append" else "x' = the prompter's output")
    result = ("not evaluated yet" if h is None else
              f"{h['reward_mean']:+.3f} [{h['reward_ci_low']:+.3f}, {h['reward_ci_high']:+.3f}] mean r(x, y) "
              f"over {h['n']} held-out answers (95 % bootstrap CI)")
    front = ["---", "library_name: peft" if card["base"]["path"] else "library_name: transformers"]
    if b["hub_id"]:
        front.append(f"base_model: {b['hub_id']}")
    front += ["tags:", "- alignpro", "- prompt-rewriting", "- rloo", "---"]
    return "\n".join([*front, "", f"# Align-Pro prompter: {t['dataset']} world, frozen model {t['frozen']}", "",
                      "A prompter trained with Align-Pro (Trivedi et al., AAAI 2025): it rewrites a prompt x into x' "
                      "so that a frozen model's answer to x' scores higher under the reward, while staying within a "
                      "KL leash of its reference. The frozen model's weights are never touched.", "",
                      "## Use it", "", "```bash",
                      "python -m alignpro.rewrite <this folder> \"How do volcanoes form?\"   # x'",
                      "python -m alignpro.serve <this folder>              # an OpenAI-compatible proxy on :8100",
                      "```", "", "## Rewrite settings (alignpro.json)", "",
                      f"- base: {base}", f"- how x' is built: {joined}",
                      f"- meta-prompt: {r['meta_prompt']!r}", f"- system turn: {r['system']!r}",
                      f"- at most {r['max_new_tokens']} new tokens, sampled with {r['sampling']}", "",
                      "## Training", "",
                      f"- method {t['method']}, lambda = {t['lam']}, {t['steps']} steps, seed {t['seed']}",
                      f"- dataset {t['dataset']}, reward {t['reward']}, frozen model {t['frozen']}",
                      f"- held-out: {result}", "",
                      "The run's whole resolved config is under `config` in alignpro.json.", ""])
