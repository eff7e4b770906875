"""alignpro.models.trained: a run's trained prompter, found and loaded outside its run, with the run's settings."""

from __future__ import annotations

import shutil

import pytest

from alignpro.models.sampling import Sampling
from alignpro.models.trained import load_trained
from alignpro.report.evaluate import eval_samplings
from alignpro.run.errors import BadInput
from tests.test_rewrite import job


def test_a_finished_alignpro_job_gives_its_prompter_and_the_evaluations_rewrite_sampling(arms_sweep):
    run = job(arms_sweep, "alignpro")
    trained = load_trained(run)
    assert trained.folder == run / "prompter" and trained.cfg.method.name == "alignpro"
    _, rewrite = eval_samplings(trained.cfg.eval, trained.cfg.frozen.max_new_tokens,
                                trained.cfg.prompter.max_new_tokens)
    assert trained.rewrite_sampling() == rewrite  # what the run's own evaluation drew rewrites with
    assert trained.rewrite_sampling(greedy=True) == Sampling(rewrite.max_new_tokens, temperature=0)
    prompter = trained.load("cpu")
    assert prompter.meta_prompt == trained.cfg.prompter.meta_prompt and prompter.mode == trained.cfg.prompter.rewrite


def test_what_is_not_a_trained_prompter_is_refused_before_anything_loads(arms_sweep, tmp_path):
    with pytest.raises(BadInput, match="is not a run dir: it has no config.yaml"):
        load_trained(tmp_path)
    with pytest.raises(BadInput, match="its method, no_finetune, trains no prompter"):
        load_trained(job(arms_sweep, "no_finetune"))
    run = shutil.copytree(job(arms_sweep, "alignpro"), tmp_path / "run")
    shutil.rmtree(run / "prompter")
    with pytest.raises(BadInput, match="the job has not finished training"):
        load_trained(run)
