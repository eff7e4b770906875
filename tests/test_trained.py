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


def test_the_saved_prompter_carries_its_settings_and_a_filled_model_card(arms_sweep):
    import json

    run = job(arms_sweep, "alignpro")
    card = json.loads((run / "prompter" / "alignpro.json").read_text())
    cfg, metrics = load_trained(run).cfg, json.loads((run / "metrics.json").read_text())
    assert card["rewrite"] == {"meta_prompt": cfg.prompter.meta_prompt, "system": cfg.prompter.system,
                               "mode": cfg.prompter.rewrite, "max_new_tokens": cfg.prompter.max_new_tokens,
                               "sampling": dict(cfg.eval.rewrite_sampling or cfg.eval.sampling)}
    assert card["heldout"]["reward_mean"] == metrics["reward_mean"] and card["config"]["seed"] == cfg.seed
    readme = (run / "prompter" / "README.md").read_text()
    assert readme.startswith("---\n") and "# Align-Pro prompter" in readme
    assert f"{metrics['reward_mean']:+.3f}" in readme and "python -m alignpro.serve <this folder>" in readme
    assert "[More Information Needed]" not in readme  # PEFT's empty template is replaced


def test_the_prompter_folder_copied_anywhere_loads_with_its_own_settings(arms_sweep, tmp_path):
    import json

    run = job(arms_sweep, "alignpro")
    alone = shutil.copytree(run / "prompter", tmp_path / "elsewhere" / "my-prompter")
    trained, from_run = load_trained(alone), load_trained(run)
    assert trained.folder == alone and trained.rewrite_sampling() == from_run.rewrite_sampling()
    assert trained.cfg.prompter == from_run.cfg.prompter and trained.cfg.frozen == from_run.cfg.frozen
    adapter = alone / "adapter_config.json"
    if adapter.is_file():  # a LoRA prompter whose base has gone says where the base came from
        adapter.write_text(json.dumps({**json.loads(adapter.read_text()), "base_model_name_or_path": "/gone/rho"}))
        with pytest.raises(BadInput, match=r"base model /gone/rho is gone .*alignpro\.json"):
            load_trained(alone)


def test_a_lora_prompters_card_names_its_base_and_how_to_get_it_back(arms_sweep, tmp_path):
    import json

    from alignpro.models.trained import write_card

    folder = shutil.copytree(job(arms_sweep, "alignpro") / "prompter", tmp_path / "lora")
    config = json.loads((folder / "alignpro.json").read_text())["config"]
    config["prompter"]["model_id"], config["sft"]["enabled"] = "org/base-model", True
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/cache/sft/gone"}))
    write_card(folder, config)
    readme = (folder / "README.md").read_text()
    assert "library_name: peft\nbase_model: org/base-model\n" in readme and "held-out: not evaluated yet" in readme
    assert "LoRA adapter on rho_sft, a supervised prompter trained on org/base-model" in readme
    with pytest.raises(BadInput, match="is gone .*it is rho_sft, trained on org/base-model by the run's config"):
        load_trained(folder)


def test_an_artifact_reference_without_w_and_b_is_one_line_naming_what_works_instead(monkeypatch):
    ref = "wandb:me/alignpro/prompter-abc123:v0"
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(BadInput, match=r"is a W&B artifact, and W&B is offline here .*run dir or its prompter/"):
        load_trained(ref)
    monkeypatch.setenv("WANDB_MODE", "online")  # online, but no key: W&B's own refusal, in one line, no traceback
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", "/nonexistent-alignpro-wandb")  # no netrc login either
    monkeypatch.setenv("NETRC", "/nonexistent-alignpro-netrc")
    with pytest.raises(BadInput, match=r"W&B could not give this model artifact .*WANDB_API_KEY"):
        load_trained(ref)
