"""``python -m alignpro.tools.plan``: full-size shapes on the meta device, LoRA counted through peft, each arm's memory
plan,
the job list of a sweep, and the memory table of docs/memory-plan.md (``python -m tests.test_plan`` rewrites it)."""

from __future__ import annotations

import json
import math
import re
import subprocess

import pytest
from omegaconf import OmegaConf

from alignpro.tools import plan
from tests import cli
from tests.conftest import ROOT, compose_raw

TABLE_DOC = ROOT / "docs" / "memory-plan.md"  # where the memory table is shown (README links it)
# Published sizes (the model cards) and the exact counts of the shipped configs (their data card).
PAPER = {
    "microsoft/Phi-3.5-mini-instruct": (3.8e9, 3_821_079_552),
    "Qwen/Qwen2.5-1.5B-Instruct": (1.54e9, 1_543_714_304),
    "meta-llama/Llama-3.1-8B-Instruct": (8.03e9, 8_030_261_248),
    "Qwen/Qwen2.5-7B-Instruct": (7.62e9, 7_615_616_512),
    "weqweasdas/RM-Gemma-2B": (2.5e9, 2_506_174_464),
}
ALL_LINEAR = {"llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
              "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")}


@pytest.fixture(scope="module")
def grid():
    """The paper grid's plan, computed once (Hydra composes 48 points; the models are built on the meta device)."""
    return plan.plan(["experiment=paper/grid"])


def job_cfg(*overrides: str):
    from alignpro.config.validate import validate

    return validate(compose_raw(*overrides))


def node(model_id: str, lora=None, kind: str | None = None):
    return OmegaConf.create({"source": "hub", "model_id": model_id, "lora": lora, "kind": kind})


@pytest.mark.parametrize("model_id", PAPER)
def test_paper_models_built_on_the_meta_device_have_their_published_sizes(model_id):
    published, exact = PAPER[model_id]
    role = "reward" if "RM" in model_id else "prompter"
    s = plan.model_shape(node(model_id, kind="hf_classifier"), role)
    assert s.params == exact
    assert abs(s.params - published) / published < 0.01


def test_lora_wraps_exactly_the_modules_the_configs_name(grid):
    """r = 16 on every linear of the blocks (not the head): Phi-3.5 25.2 M, Llama-3.1-8B 41.9 M, Qwen2.5-7B 40.4 M;
    Qwen2.5-1.5B is fully fine-tuned (no adapter, every parameter trainable)."""
    trained = {s.model_id: s for p in grid["arms"].values() for r, s in p.shapes.items() if s.trainable}
    phi, llama = trained["microsoft/Phi-3.5-mini-instruct"], trained["meta-llama/Llama-3.1-8B-Instruct"]
    qwen7, qwen1 = trained["Qwen/Qwen2.5-7B-Instruct"], trained["Qwen/Qwen2.5-1.5B-Instruct"]
    assert (phi.trainable, llama.trainable, qwen7.trainable) == (25_165_824, 41_943_040, 40_370_176)
    assert dict(phi.lora_modules) == {m: 32 for m in ALL_LINEAR["phi3"]}
    assert dict(llama.lora_modules) == {m: 32 for m in ALL_LINEAR["llama"]}
    assert dict(qwen7.lora_modules) == {m: 28 for m in ALL_LINEAR["llama"]}
    assert qwen1.trainable == qwen1.params and qwen1.lora_modules == ()
    # Hand count of a narrower adapter: q (1536 -> 1536) and v (1536 -> 2 KV heads x 128) at r = 8, 28 layers.
    narrow = plan.model_shape(node("Qwen/Qwen2.5-1.5B-Instruct", {"r": 8, "target_modules": ["q_proj", "v_proj"]}),
                              "prompter", train=True)
    assert narrow.trainable == 28 * 8 * ((1536 + 1536) + (1536 + 256))
    assert dict(narrow.lora_modules) == {"q_proj": 28, "v_proj": 28}


def test_smoke_memory_plan_by_hand():
    """experiment=smoke on CPU: tiny fp32 models, full fine-tuning, no gradient checkpointing."""
    cfg = job_cfg("experiment=smoke")
    p = plan.plan_arm(cfg, prompt_tokens=100)
    pol, f, r = p.shapes["prompter"], p.shapes["frozen"], p.shapes["reward"]
    assert pol.trainable == pol.params
    # weights, 2 AdamW moments and ρ_ref, all fp32; the frozen model and the BT encoder in fp32
    assert dict(p.persistent) == {
        "prompter weights (fp32 master, full fine-tuning)": 4 * pol.params,
        "AdamW moments (2 x fp32)": 8 * pol.params, "rho_ref (fp32 copy)": 4 * pol.params,
        "frozen weights": 4 * f.params, "reward model weights": 4 * r.params}
    rollouts = cfg.trainer.prompts_per_step * cfg.trainer.num_generations
    meta = math.ceil(len(cfg.prompter.meta_prompt.replace("[PROMPT]", "")) / plan.CHARS_PER_TOKEN)
    seq = plan.TEMPLATE_TOKENS + meta + 100 + cfg.prompter.max_new_tokens
    kv_per_token = 2 * pol.layers * pol.kv_heads * pol.head_dim * 4  # K and V, fp32 on CPU
    stages = {s.name: s for s in p.stages}
    assert stages["rollout"].transient == rollouts * seq * kv_per_token
    update = dict(stages["update"].items)
    assert update["gradients (fp32)"] == 4 * pol.params
    acts = pol.layers * rollouts * seq * pol.layer_values_per_token * 4  # no checkpointing: every layer's
    assert update[f"activations {rollouts} x {seq} tok"] == acts
    assert p.peak == p.base + max(s.transient for s in p.stages)
    assert p.hours is None  # device=cpu: no GPU-hours


def test_lora_keeps_no_reference_copy_and_trains_the_adapter_in_fp32():
    cfg = job_cfg("experiment=smoke", "prompter.lora={r: 4}")
    p = plan.plan_arm(cfg)
    s = p.shapes["prompter"]
    assert 0 < s.trainable < s.params and dict(s.lora_modules) == {m: 2 for m in ALL_LINEAR["llama"]}
    what = dict(p.persistent)
    assert what["LoRA adapter (fp32)"] == 4 * s.trainable and what["AdamW moments (2 x fp32)"] == 8 * s.trainable
    assert not any("rho_ref" in w for w in what)


def test_context_checks_name_a_cut_prompt_and_a_setting_that_never_fits():
    p = plan.plan_arm(job_cfg("experiment=smoke", "prompter.max_new_tokens=700", "frozen.max_new_tokens=1024"))
    status = {c.stage: c for c in p.checks}
    rollout = status["rollout"]  # context 1024: template + meta-prompt + x + 700 new tokens
    assert rollout.x_budget == 1024 - rollout.overhead - 700
    assert rollout.status == f"x cut from 512 to {rollout.x_budget} tokens"
    assert status["answer x"].status == "never fits: 1024 new tokens >= context 1024"


def test_the_paper_grid_lists_every_point_and_runs_each_distinct_job_once(grid):
    jobs = grid["jobs"]
    assert len(jobs) == 48
    running = [j for j in jobs if j.runs]
    sweep_dir = {str(j.run_dir).rsplit("/", 1)[0] for j in jobs}
    assert len(sweep_dir) == 1 and sweep_dir.pop().startswith("outputs/paper/")  # one ${now:...} for the sweep
    assert {j.group for j in jobs} == {f"sweep-{jobs[0].run_dir.split('/')[-2]}"}
    by_num = {j.job: j for j in running}
    assert len(running) == 36  # no_finetune and rlhf run once for both prompters
    for j in jobs:
        if not j.runs:
            assert j.run_dir == by_num[j.job].run_dir and any(m in j.overrides for m in
                                                              ("method=no_finetune", "method=rlhf"))
    assert [j.job for j in running] == list(range(len(running)))
    assert all(j.run_dir.endswith(f"/{j.job}") for j in jobs)
    for j in running:
        assert j.plan.peak == j.plan.base + max(s.transient for s in j.plan.stages)
    alignpro = next(j.plan for j in running if "method=alignpro" in j.overrides)  # on UltraFeedback
    assert alignpro.hours == pytest.approx(sum(alignpro.time_terms.values()) / 3600)
    t = OmegaConf.select(job_cfg("experiment=paper/phi35_mini_llama31_8b_ultrafeedback"), "trainer")
    if t.max_steps == "paper":  # one pass over 61,135 prompts in batches of prompts_per_step x k rollouts
        batches = math.ceil(61_135 / (t.prompts_per_step * t.num_generations))
        assert alignpro.steps == {"updates": batches * t.num_iterations, "generations": batches}
    for arm in grid["arms"].values():
        assert all(c.status == "ok" for c in arm.checks), arm.key


def test_a_comma_list_is_a_sweep_of_its_values():
    result = plan.plan(["experiment=smoke", "lam=0.1,0.2"])
    jobs = result["jobs"]
    assert [(j.job, j.runs) for j in jobs] == [(0, True), (1, True)]
    assert [sorted(j.overrides) for j in jobs] == [["experiment=smoke", "lam=0.1"], ["experiment=smoke", "lam=0.2"]]
    assert jobs[0].run_dir.startswith("outputs/multiruns/") and jobs[1].run_dir.endswith("/1")
    assert jobs[0].group == jobs[1].group == f"sweep-{jobs[0].run_dir.split('/')[-2]}"


def test_training_budget_follows_num_iterations_and_the_paper_pass():
    cfg = OmegaConf.create({"dataset": {"name": "orca"},
                            "trainer": {"max_steps": "paper", "num_iterations": 4, "prompts_per_step": 32,
                                        "num_generations": 4}})
    assert plan.trained_steps(cfg) == (93 * 4, 93)  # ceil(11,859 / 128) generations, each reused for 4 updates
    cfg.trainer.max_steps = 250
    assert plan.trained_steps(cfg) == (250, 63)


def test_gpu_anchors_are_the_measured_ones():
    """The decode and training-step times come from docs/gpu-anchors.md; they change together."""
    doc = (ROOT / "docs" / "gpu-anchors.md").read_text(encoding="utf-8")
    for shape, (ms, _) in plan.DECODE_ANCHORS.items():
        assert re.search(rf"\| {re.escape(shape)} \| (`generate\(\)`, dynamic cache, eager[^|]*|same) \| 64 \| "
                         rf"{ms} \|", doc), shape
    assert f"takes {plan.TRAIN_STEP_S} s" in doc and "batch 16 × 384 tokens" in doc


def readme_block() -> str:
    text = TABLE_DOC.read_text(encoding="utf-8")
    return text[text.index(plan.README_START) + len(plan.README_START): text.index(plan.README_END)].strip()


def test_the_docs_memory_table_is_the_commands_output(grid):
    assert readme_block() == plan.readme_block(grid), \
        "docs/memory-plan.md's memory table differs from the plan; regenerate it: .venv/bin/python -m tests.test_plan"


def run_plan(*args: str) -> subprocess.CompletedProcess:
    return cli.run("alignpro.tools.plan", *args, timeout=300)


def test_the_command_lists_a_sweep_without_launching_it(tmp_path):
    out = tmp_path / "plan.json"
    sweep = tmp_path / "sweep"
    proc = run_plan("--multirun", "experiment=smoke", "lam=0.1,0.2", f"hydra.sweep.dir={sweep}", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"2 jobs would be launched; sweep dir {sweep}, W&B group sweep-sweep")
    assert f"| 1 | lam=0.2 | {sweep}/1 |" in proc.stdout
    data = json.loads(out.read_text())
    assert [j["run_dir"] for j in data["jobs"]] == [f"{sweep}/0", f"{sweep}/1"]
    assert data["arms"][0]["peak_gb"] > 0 and data["note"] == plan.ESTIMATE_NOTE
    assert not sweep.exists()  # nothing launched, no run dir made


def test_a_bad_job_is_one_line_naming_it():
    proc = run_plan("experiment=smoke", "lam=0.1,-1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alignpro: 1 of 2 jobs are invalid")
    assert "job 1 (" in lines[0] and "lam=-1" in lines[0] and "Traceback" not in proc.stderr


def write_readme_table() -> None:
    """Write the plan's memory table into docs/memory-plan.md."""
    text = TABLE_DOC.read_text(encoding="utf-8")
    head, rest = text.split(plan.README_START)
    _, tail = rest.split(plan.README_END)
    TABLE_DOC.write_text(f"{head}{plan.README_START}\n{plan.readme_block()}\n{plan.README_END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    write_readme_table()
