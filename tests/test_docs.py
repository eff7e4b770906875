"""The docs cannot drift from the code: the README's demo block is generated, and every path they name exists.

* The README block between ``<!-- demo:start -->`` and ``<!-- demo:end -->`` must equal what tests/docs_sync.py
  renders from docs/demo-result.json (a real `make demo`), so a hand edit fails here.
* Every ``alignpro/…`` path and every dotted ``alignpro.…`` name (``python -m`` commands, ``_target_:``s, API
  names in prose) in the README, docs/*.md, launchers/README.md, tests/README.md and conf/**/*.yaml must resolve:
  a path to a file or folder, a dotted name to a module or package, plus at most one attribute defined at its top
  level (``alignpro.report.compare.ComparisonCallback``). Read statically: nothing is imported.
* Relative Markdown links in the same pages point at files that exist.
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path

import pytest

from tests.docs_sync import README, RESULT, demo_block, readme_block

ROOT = Path(__file__).resolve().parents[1]
PAGES = [README, ROOT / "launchers" / "README.md", ROOT / "tests" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFS = sorted((ROOT / "conf").rglob("*.yaml"))
FILE_SUFFIXES = {"py", "yaml", "yml", "md", "json", "jsonl", "txt", "toml", "png", "pdf", "csv", "cfg", "egg-info"}

# `alignpro/…` not inside another path or URL (…/alignpro/…, ~/.cache/alignpro/…), up to a character that ends it.
SLASHED = re.compile(r"(?<![\w/.~-])alignpro/[\w./-]*")
# `alignpro.x.y` not inside a file name or path (conf/method/alignpro.yaml, methods/alignpro.py).
DOTTED = re.compile(r"(?<![\w/.-])alignpro(?:\.[A-Za-z_]\w*)+")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_demo_block_is_generated_from_docs_demo_result():
    result = json.loads(RESULT.read_text(encoding="utf-8"))
    assert readme_block(README.read_text(encoding="utf-8")) == demo_block(result), (
        "README.md's demo block differs from docs/demo-result.json; regenerate both from a finished demo sweep:\n"
        "  .venv/bin/python -m tests.docs_sync demo outputs/demo/<time>")


def test_demo_result_records_where_its_numbers_came_from():
    result = json.loads(RESULT.read_text(encoding="utf-8"))
    assert result["command"] == "make demo"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", result["date"]) and result["machine"]
    assert re.fullmatch(r"[0-9a-f]{40}", result["git"]["sha"])
    assert {"no_finetune", "alignpro"} <= set(result["arms"]) and "alignpro - no_finetune" in result["pairs"]


def test_the_demo_block_pairs_with_the_sentence():
    """The plain sentence is compare.py's, and it quotes the same paired difference the table shows."""
    result = json.loads(RESULT.read_text(encoding="utf-8"))
    p = result["pairs"]["alignpro - no_finetune"]
    assert f"{p['diff_mean']:+.2f} reward" in result["sentence"]
    assert f"[{p['diff_ci_low']:+.2f}, {p['diff_ci_high']:+.2f}]" in result["sentence"]


@cache
def top_level_names(module: Path) -> frozenset[str]:
    """Names a module defines or imports at its top level (classes, functions, assignments, imports, also under a
    top-level ``if``/``try``, e.g. ``if TYPE_CHECKING:``), plus the strings of ``__all__``: a package that exports
    names lazily (a module ``__getattr__``) lists them there or imports them for type checkers."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
                if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
                    names.update(c.value for c in ast.walk(node.value)
                                 if isinstance(c, ast.Constant) and isinstance(c.value, str))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(ast.parse(module.read_text(encoding="utf-8")).body)
    return frozenset(names)


def module_file(parts: list[str]) -> Path | None:
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return base if base.is_dir() else None  # a namespace folder (alignpro/models/paper_configs)


def resolves_dotted(name: str) -> bool:
    parts = name.split(".")
    if parts[-1] in FILE_SUFFIXES:  # a file name in prose (`alignpro.py`), not a module
        return True
    for i in range(len(parts), 0, -1):
        found = module_file(parts[:i])
        if found is None:
            continue
        rest = parts[i:]
        if not rest:
            return True
        # one attribute, defined at the module's top level (a method of it is not checked further)
        return found.suffix == ".py" and rest[0] in top_level_names(found)
    return False


def resolves_slashed(path: str) -> bool:
    path = path.rstrip(".,;:")
    if any(c in path for c in "<>*{}"):  # a template (alignpro/methods/<name>.py) or a glob
        return True
    return (ROOT / path).exists()


def named_paths(text: str) -> set[str]:
    found = {m.group(0).rstrip(".,;:") for m in SLASHED.finditer(text) if not resolves_slashed(m.group(0))}
    found |= {m.group(0) for m in DOTTED.finditer(text) if not resolves_dotted(m.group(0))}
    return found


@pytest.mark.parametrize("page", PAGES + CONFS, ids=[str(p.relative_to(ROOT)) for p in PAGES + CONFS])
def test_every_alignpro_path_named_exists(page: Path):
    missing = named_paths(page.read_text(encoding="utf-8"))
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {sorted(missing)}"


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page: Path):
    """A relative link names a file that exists and, with #anchor into a Markdown page, one of its headings."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # a URL
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path) if path else page
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files or headings: {broken}"


def test_the_path_check_catches_a_moved_module():
    """The check itself: a stale path and a stale dotted name are caught, real ones and templates are not."""
    assert named_paths("see alignpro/nowhere.py and `python -m alignpro.nowhere`") == {
        "alignpro/nowhere.py", "alignpro.nowhere"}
    assert named_paths("alignpro/train.py, alignpro/methods/<name>.py, `python -m alignpro.report.compare`, "
                       "_target_: alignpro.report.compare.ComparisonCallback, conf/method/alignpro.yaml, "
                       "~/.cache/alignpro/judge") == set()
    assert named_paths("alignpro.report.compare.NoSuchCallback") == {"alignpro.report.compare.NoSuchCallback"}


def test_docs_sync_renders_a_sweep_written_by_compare(tmp_path):
    """docs_sync reads what alignpro/report/compare.py writes (its own markdown, not a hand-made copy), with the arms'
    labels as the comparison shows them, and keeps the commit the runs recorded."""
    import yaml

    from alignpro.report.compare import markdown, sentence
    from tests import docs_sync

    runs = {}
    for arm in ("no_finetune", "base_prompter", "alignpro"):
        d = tmp_path / arm
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump({"sft": {"enabled": True}}))
        (d / "run_info.json").write_text(json.dumps({"git": {"sha": "a" * 40, "dirty": False}}))
        runs[arm] = {"0": str(d)}
    arms = {arm: {"mean": m, "ci_low": m - 1, "ci_high": m + 1, "var": 1.0, "n": 72, "seeds": [0]}
            for arm, m in (("no_finetune", 3.0), ("base_prompter", 5.0), ("alignpro", 8.0))}
    pairs = {"alignpro - no_finetune": {"diff_mean": 5.0, "diff_ci_low": 4.0, "diff_ci_high": 6.0, "n_pairs": 72,
                                       "share_a_better": 0.9, "seeds": [0]}}
    res = {"arms": arms, "pairs": pairs, "sentence": sentence(pairs), "runs": runs}
    (tmp_path / "comparison.json").write_text(json.dumps(res))
    (tmp_path / "comparison.md").write_text(markdown(res, str(tmp_path)))

    result = docs_sync.demo_result(tmp_path, "2 cores, 24 GiB, no GPU")
    assert result["git"]["sha"] == "a" * 40 and result["command"] == "make demo"
    assert result["arms"]["base_prompter"]["label"] == "base prompter (before RL)"  # conf/method/base_prompter.yaml
    block = docs_sync.demo_block(result)
    assert "| **Align-Pro − no fine-tuning**, paired | **+5.00** | [+4.00, +6.00] | 72 pairs |" in block
    assert result["sentence"] in block

    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{docs_sync.START}\nold\n{docs_sync.END}\ntail\n")
    docs_sync.write_readme_block(result, readme)
    text = readme.read_text()
    assert docs_sync.readme_block(text) == block and text.startswith("head\n") and text.endswith("\ntail\n")
