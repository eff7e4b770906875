"""The house's import contract: layers import downwards only (pyproject.toml [tool.importlinter], run by `make lint`),
no module is part of an import cycle, and what a refused override or `--cfg job` runs imports no model stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "trl", "peft", "wandb")


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_the_layer_contract_holds():
    """The real tool on the real contract: a module importing a layer above its own fails `make lint` and this."""
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert tool, "import-linter is not installed (pip install -e '.[dev]')"
    proc = subprocess.run([tool, "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "BROKEN" not in proc.stdout


def test_no_module_takes_part_in_an_import_cycle():
    graph = grimp.build_graph("alignpro", exclude_type_checking_imports=True)
    assert cycles(graph) == []


def test_cycles_are_found():
    """The check above can fail: a two-module cycle added to the real graph is reported."""
    graph = grimp.build_graph("alignpro", exclude_type_checking_imports=True)
    graph.add_import(importer="alignpro.run.errors", imported="alignpro.config.rules")
    assert ["alignpro.config.rules", "alignpro.run.errors"] in cycles(graph)


def test_the_entry_point_the_validator_and_the_preflight_import_no_model_stack():
    """`python -m alignpro.train --cfg job`, a refused bad value and a sweep's preflight import these modules only
    before they answer: none may pull torch, transformers, trl, peft or wandb in."""
    code = ("import sys, alignpro.train, alignpro.config.validate, alignpro.config.preflight, alignpro.tools.plan; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout
    assert out.strip() == "[]"


def test_a_refused_override_never_loads_the_model_stack(tmp_path):
    """A bad value is refused by the validator, in the job's own process, before any model module is imported."""
    probe = tmp_path / "sitecustomize.py"
    probe.write_text("import atexit, sys\n"
                     f"atexit.register(lambda: print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules), "
                     "file=sys.stderr))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = subprocess.run([sys.executable, "-m", "alignpro.train", "experiment=smoke", "lam=-1",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "lam=-1" in proc.stderr
    assert "HEAVY []" in proc.stderr
