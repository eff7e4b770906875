"""Evaluate a trained prompter anywhere: on other held-out prompts, in front of another frozen model, under another
reward.

    python -m alignpro.evaluate outputs/demo/<time>/2                               # as its run evaluated it
    python -m alignpro.evaluate <run dir> frozen=tiny                               # in front of another frozen model
    python -m alignpro.evaluate <run dir> dataset=jsonl dataset.path=my_prompts.jsonl reward=rm_gemma_2b
    python -m alignpro.evaluate <run dir> --multirun method=trained,no_finetune frozen=smollm2_135m,tiny

The first argument is the trained prompter: a run dir of a finished ``method=alignpro`` job, its ``prompter/``
folder, or its W&B artifact ``wandb:<entity>/<project>/prompter-<run id>:<version>`` (downloaded into the cache).
The rest are ``alignpro.train``'s overrides, and the job is an ``alignpro.train`` job of ``method=trained``
(conf/method/trained.yaml): the same pipeline, run dir, ``metrics.json``, W&B run and reports. The prompter keeps the
training run's rewrite settings. The world it is evaluated in (``frozen``, ``dataset``, ``reward``, ``eval``,
``generation``) is the training run's too, except a group chosen on the command line (``frozen=tiny``; an
``experiment=`` chooses them all); a key given alone (``frozen.max_new_tokens=32``) changes the training run's
block. The reward, unless chosen, is the training run's world's: fitted on the training run's dataset
(``reward.fit_dataset``), so new prompts, a prompts-only file included, are scored as the prompter was trained to
please. ``method=no_finetune`` in the same world answers the same prompts directly, for a paired comparison.
The world is filled in when the job starts: ``--cfg job`` prints the config before that, and the job's
``config.yaml`` holds what ran.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from alignpro import CONF_DIR
from alignpro.config.trained import ARTIFACT, trained_source
from alignpro.run.errors import BadInput, run_cli
from alignpro.train import run_job

WORLD = ("frozen", "dataset", "reward", "eval", "generation")  # the training run's, unless given
VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
               "-cd", "--experimental-rerun")  # Hydra's flags that take a value


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """One job: the world's groups the command line did not give are the training run's, then :func:`run_job`."""
    from hydra.core.hydra_config import HydraConfig

    keys = [o.split("=")[0].lstrip("+~").split("@")[0] for o in HydraConfig.get().overrides.task]
    trained, _, _ = trained_source(cfg.method.from_run)
    with open_dict(cfg):
        for group in WORLD if "experiment" not in keys else ():
            if group in keys or group not in trained:  # frozen=<option>: the command line's choice
                continue
            # the training run's block, with the command line's keys of it (frozen.max_new_tokens=...) on top
            given = {k: OmegaConf.select(cfg, k) for k in keys if k.startswith(f"{group}.")}
            cfg[group] = trained[group]
            for k, v in given.items():
                OmegaConf.update(cfg, k, v, force_add=True)
        if "reward" not in keys and cfg.reward.kind == "bt_encoder" and cfg.reward.get("fit_dataset") is None:
            cfg.reward.fit_dataset = trained["dataset"]  # the world's reward, whatever prompts it scores
    return run_job(cfg)


def cli() -> None:
    """``python -m alignpro.evaluate <trained prompter> [overrides]``: the prompter becomes ``method.from_run``."""
    flags, overrides, sources, rest = [], [], [], sys.argv[1:]
    while rest:  # Hydra's flags (and their values) first: argparse takes no overrides on both sides of --multirun
        a = rest.pop(0)
        (flags if a.startswith("-") else overrides if "=" in a else sources).append(a)
        if a in VALUE_FLAGS and rest and not rest[0].startswith("-") and "=" not in rest[0]:
            flags.append(rest.pop(0))
    if len(sources) != 1:
        raise BadInput(f"give one trained prompter (a run dir, its prompter/ folder or wandb:<artifact>) before the "
                       f"overrides; got {len(sources)}: {' '.join(sources) or 'none'}")
    source = sources[0]
    if source.startswith(ARTIFACT):
        from alignpro.models.trained import from_artifact

        source = str(from_artifact(source))
    trained_source(source)  # a path that holds no trained prompter is one line now, before Hydra starts
    method = [] if any(a.split("=")[0] == "method" for a in overrides) else ["method=trained"]
    quoted = "'" + source.replace("\\", "\\\\").replace("'", "\\'") + "'"
    sys.argv = [sys.argv[0], *flags, *overrides, *method, f"++method.from_run={quoted}"]  # ++: no_finetune has none
    main()


if __name__ == "__main__":
    run_cli(cli)
