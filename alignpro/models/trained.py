"""A trained prompter outside the run that trained it: the run's folder ``prompter/`` (full weights, or a LoRA adapter
on its base) and the settings it was trained to rewrite with, read from the run's ``config.yaml``: the meta-prompt, the
system turn, the token limit, how x and the prompter's output are joined (``prompter.rewrite``), and the evaluation's
sampling. Used by ``python -m alignpro.rewrite`` and ``python -m alignpro.serve``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

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
    """The trained prompter of a finished ``method=alignpro`` job, or :class:`BadInput` naming what is missing."""
    from omegaconf import OmegaConf

    from alignpro.config.rules import typed
    from alignpro.config.schema import Config
    from alignpro.run.directory import RunDir

    run_dir = Path(run_dir)
    files = RunDir(run_dir)
    if not files.config.is_file():
        raise BadInput(f"{run_dir} is not a run dir: it has no config.yaml; give the folder of one job "
                       "(a sweep's job folder, e.g. outputs/demo/<time>/2)")
    cfg = typed(OmegaConf.load(files.config), Config)
    folder = files.model("prompter")
    if not folder.is_dir():
        why = ("the job has not finished training" if cfg.method.trains == "prompter" else
               f"its method, {cfg.method.name}, trains no prompter")
        raise BadInput(f"{run_dir} holds no trained prompter (no prompter/ folder: {why}); give the run dir of a "
                       "finished method=alignpro job")
    adapter = folder / "adapter_config.json"
    if adapter.is_file():  # a LoRA adapter names the folder of its base, which must still be there
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if base and base.startswith("/") and not Path(base).exists():
            raise BadInput(f"the prompter's base model {base} is gone (it lives in the cache, ALIGNPRO_CACHE); "
                           f"rerun the job's config to rebuild it: {run_dir}/config.yaml")
    return TrainedPrompter(run_dir, cfg, folder)
