"""Every bad input a user can type, through the real commands in their own processes (tests/cli.py): one line, the
right exit code.

Each :class:`Case` runs ``python -m <command> <args>`` and asserts: the exit code (2: bad input, 1: a fault), stderr
is exactly one line starting with ``alignpro:`` (the sweep preflight adds one indented line per bad job), no
traceback anywhere, the line names the bad value and what is valid (``names``), and nothing a run produces was
written (no ``metrics.json``, weights or checkpoints). The table of inputs and messages in docs/errors.md is these
cases' messages: each case also checks that its row there is its message, and

    .venv/bin/python -m tests.test_bad_inputs

rewrites the table from a fresh run of every case.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests import cli
from tests.server import ScriptedServer, chat_completion, free_port

ROOT = Path(__file__).resolve().parents[1]
TABLE_DOC = ROOT / "docs" / "errors.md"  # the table of every bad input and its line (the README links it)
START, END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"
SMOKE = ("experiment=smoke", "logger.backend=none")
SERVED = "served-model"


@dataclass(frozen=True)
class Case:
    shows: str  # the input, as the table in docs/errors.md shows it
    argv: tuple[str, ...]  # after `python -m`; {tmp}, {down}, {models}, {auth} are filled in (see `fill`)
    names: tuple[str, ...]  # what the line must name: the bad value and what is valid
    code: int = 2
    setup: str | None = None  # a function of this module preparing files under {tmp}
    hide: str | None = None  # a module the command must find missing (an optional package not installed)
    env: dict = field(default_factory=dict)
    lines: int = 1


def train(*args: str) -> tuple[str, ...]:
    return ("alignpro.train", *SMOKE, *args, "hydra.run.dir={tmp}/run")


def api(url: str, *args: str) -> tuple[str, ...]:
    return train("frozen=openai_api", f"frozen.base_url={url}", f"frozen.model={SERVED}", "frozen.api_key_env=null",
                 "frozen.timeout_s=5", *args)


CASES = [
    # -- train: config values (alignpro/config/schema.py, alignpro/config/validate.py)
    # -------------------------------------------
    Case("lam=-1", train("lam=-1"), ("lam=-1.0", "> 0")),
    Case("lam=nan", train("lam=nan"), ("lam=nan", "finite")),
    Case("lam=abc", train("lam=abc"), ("lam", "abc")),
    Case("prompter=nope", train("prompter=nope"), ("prompter/nope", "valid: ", "qwen25_1_5b")),
    Case("dataset=nope", train("dataset=nope"), ("dataset/nope", "valid: ", "helpsteer")),
    Case("method=nope", train("method=nope"), ("method/nope", "valid: ", "alignpro", "rlhf")),
    Case("experiment=paper/qwen25_1_5b_llama31_8b_helpstear (a typo)",
         ("alignpro.train", "experiment=paper/qwen25_1_5b_llama31_8b_helpstear", "hydra.run.dir={tmp}/run"),
         ("experiment/paper/qwen25_1_5b_llama31_8b_helpstear", "did you mean paper/qwen25_1_5b_llama31_8b_helpsteer",
          "valid: ", "paper/grid", "smoke")),
    Case("foo=1 (a key the config lacks)", train("foo=1"), ("'foo'", "+foo=1")),
    Case("lam=[ (unparsable override)", train("lam=["), ("'lam=['",)),
    Case("trainer.num_generations=1", train("trainer.num_generations=1"), ("trainer.num_generations=1", "2")),
    Case("trainer.max_steps=0", train("trainer.max_steps=0"), ("trainer.max_steps=0", "> 0")),
    Case("prompter.max_new_tokens=0", train("prompter.max_new_tokens=0"), ("prompter.max_new_tokens=0", "> 0")),
    Case("prompter.sampling.temperature=0", train("prompter.sampling.temperature=0"),
         ("prompter.sampling.temperature=0", "temperature > 0")),
    Case("prompter.sampling.top_p=1.5", train("prompter.sampling.top_p=1.5"), ("top_p=1.5",)),
    Case("device=cuda (no GPU)", train("device=cuda"), ("device='cuda'", "device=cpu")),
    Case("+logger.api_key=… (a secret in the config)", train("+logger.api_key=sk-live-000marker"),
         ("logger.api_key", "environment")),
    Case("resume=maybe", train("resume=maybe"), ("resume='maybe'", "auto", "never")),
    Case("+trainer.extra.num_iteration=2 (not a TRL option)", train("+trainer.extra.num_iteration=2"),
         ("trainer.extra.num_iteration", "num_iterations", "trl.RLOOConfig")),
    # -- train: data (alignpro/data/preferences.py)
    # ----------------------------------------------------------------------------
    Case("dataset=orca dataset.path=<missing dir>", train("dataset=orca", "dataset.path={tmp}/missing"),
         ("{tmp}/missing", "does not exist")),
    Case("dataset=jsonl with empty prompts", train("dataset=jsonl", "dataset.path={tmp}/empty.jsonl"),
         ("empty_prompt 8", "> 0"), setup="jsonl_with_empty_prompts"),
    Case("dataset=jsonl without a prompt column", train("dataset=jsonl", "dataset.path={tmp}/nocol.jsonl"),
         ("prompt",), setup="jsonl_without_prompt_column"),
    Case("dataset=jsonl of prompts alone, with a reward fitted on pairs", train("dataset=jsonl",
         "dataset.path={tmp}/prompts.jsonl"), ("{tmp}/prompts.jsonl", "no preference pairs", "reward=tiny",
                                                "reward=rm_gemma_2b"), setup="jsonl_of_prompts_alone"),
    Case("dataset=jsonl dataset.chosen_field=null, with a reward fitted on pairs", train("dataset=jsonl",
         "dataset.path={tmp}/prompts.jsonl", "dataset.chosen_field=null"),
         ("dataset.chosen_field=None", "reward=tiny", "reward=rm_gemma_2b"), setup="jsonl_of_prompts_alone"),
    Case("method=fixed_instruction method.select_prompts=0", train("method=fixed_instruction",
         "method.select_prompts=0"), ("method.select_prompts=0", "at least 1")),
    Case("method=best_of_n method.n_rewrites=1", train("method=best_of_n", "method.n_rewrites=1"),
         ("method.n_rewrites=1", "at least 2")),
    Case("method=no_finetune sweep_objective=train_objective", train("method=no_finetune",
         "sweep_objective=train_objective"), ("sweep_objective='train_objective'", "trains nothing", "heldout_reward")),
    Case("method=best_of_n method.n_rewrites=null", train("method=best_of_n", "method.n_rewrites=null"),
         ("method.n_rewrites=None", "method=best_of_n needs a value")),
    Case("dataset=jsonl in Latin-1, not UTF-8", train("dataset=jsonl", "dataset.path={tmp}/latin1.jsonl"),
         ("{tmp}/latin1.jsonl", "not UTF-8", "line 2", "save the file as UTF-8"), setup="jsonl_in_latin1"),
    # -- train: the run dir ---------------------------------------------------------------------------------------
    Case("hydra.run.dir=<a path under a file>", ("alignpro.train", *SMOKE, "hydra.run.dir={tmp}/afile/run"),
         ("{tmp}/afile/run", "Not a directory", "hydra.run.dir"), setup="a_file"),
    Case("hydra.run.dir=<a read-only dir> hydra.output_subdir=null hydra/job_logging=disabled",
         ("alignpro.train", *SMOKE, "hydra.run.dir=/sys/kernel", "hydra.output_subdir=null",
          "hydra/job_logging=disabled"), ("/sys/kernel", "cannot be written", "hydra.run.dir")),
    Case("hydra.run.dir=/proc/<x> (Hydra creates it before the job runs)",
         ("alignpro.train", *SMOKE, "hydra.run.dir=/proc/alignpro_x"), ("/proc/alignpro_x", "hydra.run.dir")),
    Case("resume=never in a used run dir", train("resume=never"), ("resume=never", "resume=auto"),
         setup="used_run_dir"),
    Case("lam=0.5 in a run dir of lam=0.1", train("lam=0.5"), ("lam: 0.1 -> 0.5", "new run dir"),
         setup="used_run_dir"),
    # -- train: a frozen model behind an API (alignpro/models/api.py)
    # ------------------------------------------------------
    Case("frozen=openai_api with method=rlhf", api("{down}", "method=rlhf"), ("frozen.backend", "frozen=llama31_8b")),
    Case("frozen=openai_api, its key variable unset", api("{down}", "frozen.api_key_env=ALIGNPRO_UNSET_KEY"),
         ("ALIGNPRO_UNSET_KEY is not set", "api_key_env=null")),
    Case("frozen=openai_api, no server at the URL", api("{down}"), ("127.0.0.1", "no server answers",
                                                                  "frozen.base_url")),
    Case("frozen=openai_api, a model the server does not serve", api("{models}", "frozen.model=nope"),
         ("'nope'", "does not serve", SERVED, "frozen.model")),
    Case("frozen=openai_api, a key the server refuses", api("{auth}", "frozen.api_key_env=ALIGNPRO_BAD_KEY"),
         ("HTTP 401", "ALIGNPRO_BAD_KEY"), env={"ALIGNPRO_BAD_KEY": "wrong-key-000marker"}),
    Case("frozen=openai_api without the openai package", api("{down}"), ("openai", "pip install 'alignpro[api]'"),
         hide="openai"),
    Case("frozen.base_url=localhost:8000 (no scheme)", api("localhost:8000"), ("base_url", "http")),
    Case("reward=rm_gemma_2b offline, not in the hub cache", train("reward=rm_gemma_2b"),
         ("reward.model_id='weqweasdas/RM-Gemma-2B'", "HF_HUB_OFFLINE", "reward=bt_minilm")),
    Case("--multirun --cfg job (two modes at once)", ("alignpro.train", "--multirun", "--cfg", "job"),
         ("--multirun", "--cfg")),
    # -- train --multirun -----------------------------------------------------------------------------------------
    Case("--multirun lam=0.1,-1,0.3 (one bad job)",
         ("alignpro.train", "--multirun", *SMOKE, "lam=0.1,-1,0.3", "hydra.sweep.dir={tmp}/sweep"),
         ("1 of 3 jobs", "no job was started"), lines=2),
    Case("--multirun experiment=smoke,smok (a typo in one job)",
         ("alignpro.train", "--multirun", "experiment=smoke,smok", "logger.backend=none",
          "hydra.sweep.dir={tmp}/sweep"), ("1 of 2 jobs", "no job was started"), lines=2),
    Case("--multirun launcher=slurm off a cluster (no sbatch)",
         ("alignpro.train", "--multirun", *SMOKE, "launcher=slurm", "lam=0.1,0.2", "hydra.sweep.dir={tmp}/sweep"),
         ("launcher=slurm", "sbatch", "python -m alignpro.tools.plan"), env={"PATH": "{nosbatch}"}),
    Case("--multirun launcher=slurm without the plugin",
         ("alignpro.train", "--multirun", *SMOKE, "launcher=slurm", "lam=0.1,0.2", "hydra.sweep.dir={tmp}/sweep"),
         ("hydra-submitit-launcher", "pip install 'alignpro[cluster]'"), hide="hydra_plugins.hydra_submitit_launcher"),
    Case("--multirun experiment=search/lam without the plugin",
         ("alignpro.train", "--multirun", "experiment=search/lam", "hydra.sweep.dir={tmp}/sweep"),
         ("hydra-optuna-sweeper", "pip install 'alignpro[cluster]'"), hide="hydra_plugins.hydra_optuna_sweeper"),
    # -- report ---------------------------------------------------------------------------------------------------
    Case("report <missing dir>", ("alignpro.report", "{tmp}/nothing", "--out", "{tmp}/out"),
         ("{tmp}/nothing", "not a directory of runs")),
    Case("report <dir without finished runs>", ("alignpro.report", "{tmp}/sweep", "--out", "{tmp}/out"),
         ("no finished runs",), setup="unfinished_sweep"),
    Case("report --by nope", ("alignpro.report", "{tmp}/sweep", "--out", "{tmp}/out", "--by", "nope"),
         ("--by nope", "lam"), setup="lam_sweep"),
    Case("report --judge nope", ("alignpro.report", "{tmp}/sweep", "--out", "{tmp}/out", "--judge", "nope"),
         ("--judge nope", "valid: ", "openai_api"), setup="arms_sweep"),
    Case("report --judge-set model (no =)", ("alignpro.report", "{tmp}/sweep", "--out", "{tmp}/out", "--judge",
                                             "openai_api", "--judge-set", "model"), ("model", "key=value"),
         setup="arms_sweep"),
    Case("report --judge openai_api on an ablation", ("alignpro.report", "{tmp}/sweep", "--out", "{tmp}/out",
                                                       "--judge", "openai_api"), ("ablation", "method=alignpro"),
         setup="lam_sweep"),
    Case("report --judge openai_api, no judge server", (
        "alignpro.report", "{tmp}/sweep", "--out", "{tmp}/out", "--judge", "openai_api", "--judge-set",
        "base_url={down}", "model=judge", "api_key_env=null"), ("judge:", "no server answers", "judge.base_url"),
         setup="arms_sweep"),
    Case("report --kind nope", ("alignpro.report", "{tmp}/sweep", "--out", "{tmp}/out", "--kind", "nope"),
         ("'nope'", "comparison", "ablation")),
    Case("report without --out", ("alignpro.report", "{tmp}/sweep"), ("--out",)),
    # -- rewrite (alignpro/rewrite.py) ----------------------------------------------------------------------
    Case("rewrite <not a run dir>", ("alignpro.rewrite", "{tmp}", "a prompt"),
         ("{tmp}", "not a run dir", "config.yaml")),
    Case("rewrite <an unfinished Align-Pro job>", ("alignpro.rewrite", "{tmp}/run", "a prompt"),
         ("{tmp}/run", "no trained prompter", "has not finished", "method=alignpro"), setup="used_run_dir"),
    Case("rewrite <a job> --n 0", ("alignpro.rewrite", "{tmp}/run", "a prompt", "--n", "0"),
         ("--n 0", "≥ 1"), setup="used_run_dir"),
    Case("rewrite wandb:<artifact> with W&B offline", ("alignpro.rewrite", "wandb:me/alignpro/prompter-x:v0", "hi"),
         ("wandb:me/alignpro/prompter-x:v0", "offline", "prompter/ folder"), env={"WANDB_MODE": "offline"}),
    # -- evaluate (alignpro/evaluate.py) --------------------------------------------------------------------------
    Case("evaluate without a trained prompter", ("alignpro.evaluate", "frozen=tiny"),
         ("one trained prompter", "got 0")),
    Case("evaluate <not a run dir>", ("alignpro.evaluate", "{tmp}", "frozen=tiny"), ("{tmp}", "not a run dir")),
    Case("evaluate <a job that trained no prompter>", ("alignpro.evaluate", "{tmp}/run"),
         ("{tmp}/run", "no trained prompter", "method=alignpro"), setup="used_run_dir"),
    Case("train method=trained without method.from_run", train("method=trained"),
         ("method.from_run=None", "method=trained needs a value")),
    # -- serve (alignpro/serve.py) ---------------------------------------------------------------------------------
    Case("serve <a run> --frozen.base_url <url> without --frozen.model",
         ("alignpro.serve", "{tmp}", "--frozen.base_url", "{down}"), ("--frozen.base_url", "--frozen.model")),
    Case("serve <a run> --frozen.base_url <url>, its key variable unset",
         ("alignpro.serve", "{tmp}", "--frozen.base_url", "{down}", "--frozen.model", "m", "--frozen.api_key_env",
          "ALIGNPRO_UNSET_KEY"), ("ALIGNPRO_UNSET_KEY", "is not set", "--frozen.api_key_env none")),
    Case("serve <an Align-Pro job>, no server at --frozen.base_url",
         ("alignpro.serve", "{tmp}/run", "--frozen.base_url", "{down}", "--frozen.model", "m",
          "--frozen.api_key_env", "none"), ("127.0.0.1", "no server answers", "frozen.base_url"),
         setup="trained_run_dir"),
    Case("serve <a run> --max-batch 0", ("alignpro.serve", "{tmp}", "--max-batch", "0"), ("--max-batch 0", "≥ 1")),
    Case("serve without fastapi", ("alignpro.serve", "{tmp}"), ("fastapi", "pip install 'alignpro[serve]'"),
         hide="fastapi"),
    # -- data, theory ---------------------------------------------------------------------------------------------
    Case("data dataset=nope", ("alignpro.data", "dataset=nope"), ("dataset/nope", "valid: ")),
    Case("data --n -1", ("alignpro.data", "--n", "-1"), ("--n -1", "≥ 0")),
    Case("theory --lams -1", ("alignpro.tools.theory", "--lams", "-1", "--out", "{tmp}/theory"), ("--lams -1", "> 0")),
    Case("theory --k 1", ("alignpro.tools.theory", "--k", "1", "--out", "{tmp}/theory"), ("--k 1", "≥ 2")),
    Case("theory --steps many", ("alignpro.tools.theory", "--steps", "many"), ("--steps", "'many'")),
]


# -- setups: files a case needs under {tmp} --------------------------------------------------------------------------

def jsonl_with_empty_prompts(tmp: Path) -> None:
    (tmp / "empty.jsonl").write_text("".join(json.dumps({"prompt": "  ", "chosen": "a", "rejected": "b"}) + "\n"
                                             for _ in range(8)))


def jsonl_without_prompt_column(tmp: Path) -> None:
    (tmp / "nocol.jsonl").write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(8)))


def jsonl_of_prompts_alone(tmp: Path) -> None:
    (tmp / "prompts.jsonl").write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(8)))


def jsonl_in_latin1(tmp: Path) -> None:
    (tmp / "latin1.jsonl").write_bytes('{"prompt": "a"}\n{"prompt": "caf\u00e9?"}\n'.encode("latin-1"))


def a_file(tmp: Path) -> None:
    (tmp / "afile").write_text("not a folder")


def used_run_dir(tmp: Path) -> None:
    """A run dir that holds a job of lam=0.1: its resolved config, as alignpro.run.tracking.start writes it."""
    from alignpro.config.validate import validate
    from alignpro.run import tracking
    from alignpro.run.directory import RunDir
    from tests.conftest import compose

    cfg = validate(compose(*SMOKE, "lam=0.1"))
    files = RunDir(tmp / "run")
    files.root.mkdir(parents=True)
    files.config.write_text(yaml.safe_dump(tracking.resolved(cfg)))


def trained_run_dir(tmp: Path) -> None:
    """:func:`used_run_dir` with a ``prompter/`` folder, as a finished Align-Pro job has (no weights: the commands
    must refuse before they load any)."""
    used_run_dir(tmp)
    (tmp / "run" / "prompter").mkdir()


def finished_job(d: Path, config: dict, reward: float) -> None:
    """A finished job's files, as alignpro.train writes them (config, run info, metrics, held-out samples)."""
    from alignpro.run.directory import RunDir, Sample

    files = RunDir(d)
    d.mkdir(parents=True)
    files.config.write_text(yaml.safe_dump(config))
    files.run_info.write_text("{}")
    files.write_eval_samples([Sample(f"x{i}", None, f"y{i}", reward + i / 10) for i in range(4)])
    files.write_metrics({"reward_mean": reward, "n": 4})


def lam_sweep(tmp: Path) -> None:
    for i, lam in enumerate((0.1, 0.2)):
        finished_job(tmp / "sweep" / str(i), {"method": {"name": "alignpro"}, "lam": lam, "seed": 0}, lam)


def arms_sweep(tmp: Path) -> None:
    for i, arm in enumerate(("alignpro", "no_finetune")):
        finished_job(tmp / "sweep" / str(i), {"method": {"name": arm}, "lam": 0.1, "seed": 0}, float(i))


def unfinished_sweep(tmp: Path) -> None:
    (tmp / "sweep" / "0" / ".hydra").mkdir(parents=True)
    (tmp / "sweep" / "0" / ".hydra" / "config.yaml").write_text("lam: 0.1\n")


# -- running a case --------------------------------------------------------------------------------------------------

HIDE = "import runpy, sys; sys.modules[{mod!r}] = None; sys.argv = [{cmd!r}, *sys.argv[1:]]; " \
       "runpy.run_module({cmd!r}, run_name='__main__', alter_sys=True)"


@dataclass
class Servers:
    down: str  # a localhost URL nothing listens on
    models: str  # lists SERVED on GET /v1/models, 404s a chat request for another model
    auth: str  # refuses every request with HTTP 401


def fill(arg: str, tmp: Path, servers: Servers) -> str:
    return arg.format(tmp=tmp, down=servers.down, models=servers.models, auth=servers.auth)


PRODUCTS = ("metrics.json", "checkpoints", "prompter", "oracle", "report.md", "theory.json")  # what a run makes


def products(tmp: Path) -> set[Path]:
    """What runs and reports produce, under ``tmp``: metrics, models, checkpoints, reports."""
    return {p for p in tmp.rglob("*") if p.name in PRODUCTS or p.suffix in (".safetensors", ".bin", ".pt")}


def run_case(case: Case, tmp: Path, servers: Servers) -> tuple[subprocess.CompletedProcess, set[Path]]:
    """The case's command, run; and what its setup left that looks like a product (the finished runs a report
    reads are its input)."""
    if case.setup:
        globals()[case.setup](tmp)
    inputs = products(tmp)
    cmd, *args = [fill(a, tmp, servers) for a in case.argv]
    argv = [sys.executable, "-c", HIDE.format(mod=case.hide, cmd=cmd), *args] if case.hide else \
        [sys.executable, "-m", cmd, *args]
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_SERVICE", "HYDRA_FULL_ERROR")}
    # {nosbatch}: this PATH without a folder holding SLURM's sbatch (a case that must see no cluster)
    nosbatch = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "sbatch").exists())
    case_env = {k: v.format(nosbatch=nosbatch) for k, v in case.env.items()}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **case_env)  # this checkout's code, whatever the cwd
    env.pop("ALIGNPRO_UNSET_KEY", None)
    if case.hide:  # the missing package must be missing at start-up: a cold process
        return subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=120), inputs
    return cli.run(cmd, *args, cwd=tmp, env=env, timeout=120), inputs


def shown(message: str, tmp: Path) -> str:
    """The message as docs/errors.md shows it: the test's folder and ports replaced."""
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", message.replace(str(tmp), "<dir>"))


def table_row(case: Case, message: str) -> str:
    cell = message.removeprefix("alignpro: ").replace("|", "\\|")
    return f"| `{case.shows}` | {case.code} | {cell} |"


def table_rows() -> dict[str, str]:
    text = TABLE_DOC.read_text(encoding="utf-8")
    block = text[text.index(START) + len(START): text.index(END)] if START in text else ""
    return {m.group(1): line for line in block.splitlines() if (m := re.match(r"\| `(.+?)` \|", line))}


@contextmanager
def scripted_servers() -> Iterator[Servers]:
    """Real HTTP servers on localhost: one that serves SERVED alone, one that refuses every key."""
    models = ScriptedServer(lambda body, headers: (200, chat_completion("hi", SERVED)) if body["model"] == SERVED
                            else (404, {"error": {"message": f"model {body['model']} not found"}}), models=[SERVED])
    auth = ScriptedServer(lambda body, headers: (401, {"error": {"message": "invalid api key"}}))
    with models, auth:
        yield Servers(f"http://127.0.0.1:{free_port()}/v1", models.base_url, auth.base_url)


@pytest.fixture(scope="module")
def servers():
    with scripted_servers() as srv:
        yield srv


def test_the_table_holds_at_least_30_cases_each_shown_once():
    assert len(CASES) >= 30
    assert len({c.shows for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.shows for c in CASES])
def test_bad_input_gives_one_clear_line(case, tmp_path, servers):
    proc, inputs = run_case(case, tmp_path, servers)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == case.code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr and "During handling" not in proc.stderr, proc.stderr
    assert len(lines) == case.lines and lines[0].startswith("alignpro: "), proc.stderr
    for part in case.names:
        assert fill(part, tmp_path, servers) in lines[0], (part, lines[0])
    assert products(tmp_path) - inputs == set()  # no metrics, model, checkpoint or report was written
    row = table_rows().get(case.shows)
    assert row == table_row(case, shown(lines[0], tmp_path)), \
        f"docs/errors.md's row differs; regenerate it with: .venv/bin/python -m tests.test_bad_inputs\n{row}"


def write_table() -> None:
    """Run every case and write their lines into the table of docs/errors.md."""
    import tempfile

    rows = ["| input | exit | message (after `alignpro: `) |", "|---|---|---|"]
    with scripted_servers() as srv:
        for case in CASES:
            with tempfile.TemporaryDirectory() as d:
                proc, _ = run_case(case, Path(d), srv)
                first = next((line for line in proc.stderr.splitlines() if line.strip()), "")
                rows.append(table_row(case, shown(first, Path(d))))
                print(rows[-1], flush=True)
    text = TABLE_DOC.read_text(encoding="utf-8")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    TABLE_DOC.write_text(f"{head}{START}\n" + "\n".join(rows) + f"\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    write_table()
