"""The Hydra config of a training run, composed from conf/ without running anything: for the CLIs that inspect
what a run would see (``python -m alignpro.data``, ``alignpro.tools.lever``) and for benchmarks. Imports no torch."""

from __future__ import annotations

from collections.abc import Sequence

from alignpro import CONF_DIR


def compose_config(overrides: Sequence[str]):
    """The Hydra config ``python -m alignpro.train <overrides>`` would see (without Hydra's runtime block)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))
