"""Where a trained prompter's settings are, read from files alone (no torch): a run dir's ``config.yaml`` beside its
``prompter/`` folder, or that folder's own ``alignpro.json`` wherever it was copied (alignpro/models/trained.py writes
it). ``method=trained`` takes its prompter block from here before the config is typed (alignpro/config/validate.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from alignpro.run.errors import BadInput

CARD = "alignpro.json"  # the settings file beside a saved prompter's weights
ARTIFACT = "wandb:"  # how a W&B artifact reference is told from a path


def trained_source(source: str | Path) -> tuple[dict, Path, dict]:
    """(the training run's resolved config, the prompter's folder, its card or {}) for a run dir or a prompter
    folder; :class:`BadInput` naming what is missing."""
    if str(source).startswith(ARTIFACT):
        raise BadInput(f"{source} is a W&B artifact reference: python -m alignpro.evaluate, alignpro.rewrite and "
                       "alignpro.serve download it; here give the run dir or its prompter/ folder")
    path = Path(source)
    if (path / CARD).is_file():  # the prompter folder itself: its settings travel with it
        card = json.loads((path / CARD).read_text())
        return card["config"], path, card
    if not (path / "config.yaml").is_file():
        raise BadInput(f"{path} is not a run dir: it has no config.yaml; give the folder of one job "
                       "(a sweep's job folder, e.g. outputs/demo/<time>/2) or its prompter/ folder")
    config = yaml.safe_load((path / "config.yaml").read_text())
    folder = path / "prompter"
    if not folder.is_dir():
        method = config.get("method", {})
        why = ("the job has not finished training" if method.get("trains") == "prompter" else
               f"its method, {method.get('name')}, trains no prompter")
        raise BadInput(f"{path} holds no trained prompter (no prompter/ folder: {why}); give the run dir of a "
                       "finished method=alignpro job")
    card = json.loads((folder / CARD).read_text()) if (folder / CARD).is_file() else {}
    return config, folder, card
