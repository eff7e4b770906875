"""Faults while a job runs, with real servers dying under real commands: the frozen model's API server killed in the
middle of `python -m alignpro.train`, and a judge server that dies in the middle of `python -m alignpro.report`.
What was finished is kept, the user reads one line (exit 1), and the same command run again with the server back
finishes the work without redoing what was done."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from alignpro.run.directory import RunDir, read_jsonl
from tests import cli
from tests.conftest import ROOT
from tests.server import ScriptedServer, chat_completion, free_port

TRACEBACK_MARKS = ("Traceback (most recent call last)", "During handling of the above exception",
                   "The above exception was the direct cause")


def fresh_env(**extra: str) -> dict:
    """A child's environment: its own W&B service (WANDB_SERVICE would join this process's), one thread per op."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def one_line_failure(stderr: str) -> str:
    """The failure line a user reads: the last line of stderr, which must be the only ``alignpro: `` line (split at
    carriage returns too, so a line glued to a progress bar counts as what it is) and come without a traceback."""
    assert not any(mark in stderr for mark in TRACEBACK_MARKS), stderr[-3000:]
    last = stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith("alignpro: "), f"last line of stderr: {last[-500:]!r}"
    assert [line for line in re.split(r"[\r\n]", stderr) if "alignpro: " in line] == [last], stderr[-3000:]
    return last


# ---- the frozen model's API server dies mid-training ---------------------------------------------------------------

STEPS, KILL_AFTER = 4, 2  # killed once step 2 is logged: step 3 asks a dead server


def logged_steps(files: RunDir) -> list[int]:
    """Steps in train_log.jsonl so far (a line being written is not read)."""
    lines = files.train_log.read_text().splitlines(keepends=True) if files.train_log.exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("\n") and '"reward"' in line]


def test_a_frozen_api_server_killed_mid_training_fails_the_run_in_one_line_and_the_same_command_resumes(
        servable_smollm2, tmp_path):
    from tests.server import transformers_serve

    port, run = free_port(), tmp_path / "run"  # one port for both servers: the config names the URL
    files = RunDir(run)
    err_path = tmp_path / "stderr.txt"
    with transformers_serve(servable_smollm2, tmp_path / "serve-1", port=port) as server:
        cmd = [sys.executable, "-m", "alignpro.train", "experiment=smoke", "logger=none", f"trainer.max_steps={STEPS}",
               "trainer.save_steps=1", "eval.n_prompts=2", "eval.answer_shift=false", "frozen=openai_api",
               f"frozen.base_url={server.base_url}", f"frozen.model={server.model}", "frozen.api_key_env=null",
               "frozen.extra_sampling=generation_config", "frozen.max_new_tokens=8", "frozen.max_concurrency=4",
               "frozen.max_retries=1", "frozen.backoff_s=0.1", "frozen.timeout_s=20", f"hydra.run.dir={run}"]
        with err_path.open("w") as err_file:  # a file, not a pipe: progress bars would fill a pipe nobody reads
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err_file, env=fresh_env())
        try:
            deadline = time.monotonic() + 120
            while KILL_AFTER not in logged_steps(files):
                assert proc.poll() is None, err_path.read_text()[-3000:]
                assert time.monotonic() < deadline, f"step {KILL_AFTER} not logged after 120 s"
                time.sleep(0.02)
            os.kill(server.process.pid, signal.SIGKILL)  # dies as a crashed server does: no goodbye to the client
            server.process.wait()
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:  # a failed assertion above: the run is not left behind
                proc.kill()
                proc.wait()
    stderr = err_path.read_text()
    assert rc == 1, stderr[-3000:]

    line = one_line_failure(stderr)
    assert server.base_url in line and f"model={server.model}" in line and "connection error" in line, line
    error = files.error.read_text()
    assert error.splitlines()[0] == line.removeprefix("alignpro: ")  # error.txt says it first, then the details
    # The client's counts of how it got there: the dead server was retried before the run gave up.
    stats_lines = [ln for ln in error.splitlines() if ln.startswith("frozen_api: ")]
    assert stats_lines, f"error.txt carries no 'frozen_api: {{...}}' request stats:\n{error[-2000:]}"
    stats = json.loads(stats_lines[-1].removeprefix("frozen_api: "))
    done = logged_steps(files)
    rollouts = 2 * 2  # trainer.prompts_per_step × trainer.num_generations (experiment=smoke)
    assert stats["retries"] >= 1 and stats["failures"] >= 2 and stats["gave_up"] >= 1, stats
    assert stats["completed"] >= rollouts * len(done) and stats["requests"] >= stats["completed"] + stats["failures"]

    # The finished steps are kept: their log rows, their samples, the newest complete checkpoint; no metrics.json.
    assert done == list(range(1, len(done) + 1)) and KILL_AFTER <= len(done) < STEPS
    assert [r["step"] for r in read_jsonl(files.samples)] == [s for s in range(len(done)) for _ in range(rollouts)]
    step, ckpt = files.newest_checkpoint()
    assert step == len(done) and (ckpt / "COMPLETE").is_file()
    assert not files.metrics.exists()

    # The server back at the same URL, the same command: resumed from the checkpoint (resume=auto), finished.
    with transformers_serve(servable_smollm2, tmp_path / "serve-2", port=port):
        again = cli.run(*cmd[2:], timeout=300, env=fresh_env())
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"step {step} of {STEPS}" in again.stdout and "resuming from" in again.stdout
    assert logged_steps(files) == list(range(1, STEPS + 1))  # each step once
    assert [r["step"] for r in read_jsonl(files.samples)] == [s for s in range(STEPS) for _ in range(rollouts)]
    metrics = files.read_metrics()
    assert not files.error.exists()
    # This attempt's client: the steps left and the evaluation, nothing failed.
    assert metrics["frozen_api"]["completed"] == rollouts * (STEPS - step) + 2
    assert metrics["frozen_api"]["failures"] == 0


# ---- a judge server dies mid-report --------------------------------------------------------------------------------

N_PAIRS, ANSWERED = 6, 5  # 12 orders to judge; the server dies when the 6th arrives
START_1, END_1 = "[The Start of Assistant 1's Answer]\n", "\n[The End of Assistant 1's Answer]"
START_2, END_2 = "[The Start of Assistant 2's Answer]\n", "\n[The End of Assistant 2's Answer]"


def order_of(body: dict) -> tuple[str, str, str]:
    """(prompt, Assistant 1's answer, Assistant 2's answer) of a judge request."""
    user = body["messages"][-1]["content"]
    prompt = user.removeprefix("USER PROMPT\n").split("\n\n" + START_1)[0]
    return (prompt, user[user.index(START_1) + len(START_1): user.index(END_1)],
            user[user.index(START_2) + len(START_2): user.index(END_2)])


def judging(body: dict) -> bool:
    """A judge request, not the report's start-up check of the endpoint (a 1-token "Hi")."""
    return START_1 in body["messages"][-1]["content"]


def verdict(body: dict, headers: dict) -> tuple:
    """A parseable verdict that depends on the answers, so both orders are real, distinct verdicts."""
    if not judging(body):
        return 200, chat_completion("Hello")
    _, first, second = order_of(body)
    return 200, chat_completion(f"{1 + len(first) % 10} {1 + len(second) % 10}\nBecause.")


class DyingJudge:
    """Answers the first ``answered`` requests; at the next one the server stops listening and drops the connection
    of that request (and of any that arrive with it) unanswered."""

    def __init__(self, answered: int):
        self.answered, self.given, self._lock = answered, [], threading.Lock()
        self.server: ScriptedServer | None = None

    def __call__(self, body: dict, headers: dict) -> tuple:
        if not judging(body):
            return verdict(body, headers)
        with self._lock:
            if len(self.given) < self.answered:
                self.given.append(body)
                return verdict(body, headers)
        self.server.stop()
        raise ConnectionAbortedError("the judge server died")  # no response: the client sees a dropped connection


def numbers(spans: str) -> list[int]:
    """``"1-3, 5"`` → ``[1, 2, 3, 5]``."""
    out = []
    for span in spans.split(", "):
        lo, _, hi = span.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


@pytest.fixture(scope="module")
def two_arm_sweep(arms_sweep, tmp_path_factory):
    """What a Table 1 cell judges: Align-Pro and no fine-tuning, seed 0, of the session's real multirun of the arms
    on tiny models (tests/conftest.py), copied into a sweep of their own."""
    import shutil

    from alignpro.run.directory import RunDir

    sweep = tmp_path_factory.mktemp("faults") / "sweep"
    for job in sorted(p for p in arms_sweep.iterdir() if p.is_dir() and p.name.isdigit()):
        config = RunDir(job).read_config()
        if config["method"]["name"] in ("alignpro", "no_finetune") and config["seed"] == 0:
            shutil.copytree(job, sweep / job.name)
    assert len(list(sweep.iterdir())) == 2
    assert all(len(RunDir(d).read_eval_samples()) == N_PAIRS for d in sweep.iterdir())
    return sweep


def test_a_judge_server_that_dies_mid_report_leaves_a_report_of_the_judged_pairs_and_a_rerun_asks_only_the_rest(
        two_arm_sweep, tmp_path):
    from alignpro.report.judge import JudgeCache

    port, out = free_port(), tmp_path / "report"
    base_url = f"http://127.0.0.1:{port}/v1"  # one port for both servers: the same command, the same URL
    cmd = ["alignpro.report", str(two_arm_sweep), "--out", str(out), "--no-wandb",
           "--judge", "openai_api", "--judge-set", f"base_url={base_url}", "model=scripted-judge", "api_key_env=null",
           "max_concurrency=2", "max_retries=1", "backoff_s=0.01", "timeout_s=10", f"n_prompts={N_PAIRS}"]
    env = fresh_env(ALIGNPRO_CACHE=str(tmp_path / "cache"))  # this test's own judge cache (the report loads no model)
    dying = DyingJudge(ANSWERED)
    with ScriptedServer(dying, port=port) as srv:
        dying.server = srv
        proc = cli.run(*cmd, timeout=120, env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    # It died with verdicts still to give.
    assert len(dying.given) == ANSWERED and sum(map(judging, srv.bodies)) > ANSWERED
    answered = [order_of(b) for b in dying.given]

    # The report is written with what was judged: a pair is judged when both its orders were answered.
    (row,) = json.loads((out / "report.json").read_text())["rows"]
    j = row["judge"]
    judged = [json.loads(line) for line in open(j["verdicts"])]
    assert all({(v["prompt"], v["a"], v["b"]), (v["prompt"], v["b"], v["a"])} <= set(answered) for v in judged)
    lost = j["missing"]  # [{pair, seed, prompt}]: each held-out prompt is one pair here (one seed)
    assert all(sum(o[0] == p["prompt"] for o in answered) < 2 for p in lost)
    assert len(judged) + len(lost) == N_PAIRS and judged and lost
    assert j["n_pairs"] == len(judged) and j["n_invalid"] == 0 and j["win"] + j["tie"] + j["loss"] == pytest.approx(1)
    md = (out / "report.md").read_text()
    summary = f"judge: {len(lost)} of {N_PAIRS} pairs missing ({base_url} model=scripted-judge: "
    assert f"**Incomplete: {summary}" in md
    assert f"| {len(judged)} (0), {len(lost)} missing |" in md  # Table 1's cell: pairs judged (invalid), missing
    assert "## Judge: missing pairs" in md
    for p in lost:
        assert f"pair {p['pair']} (seed 0): {p['prompt'][:100]!r}" in md
    # ... and the one line says so: which server, why, how many and which pairs, where the report is.
    line = one_line_failure(proc.stderr)
    assert line.startswith(f"alignpro: {summary}") and "connection error" in line, line
    named = re.search(r"; missing: (.+?): pairs? ([\d, -]+)\. ", line)
    assert named and named.group(1) == f"{row['cell']['dataset.name']}: {row['label']}", line
    assert numbers(named.group(2)) == [p["pair"] for p in lost], line
    assert str(out / "report.md") in line and "run the same command again" in line
    # Every answer the server gave is in the judge's cache.
    cached = list(JudgeCache(tmp_path / "cache" / "judge").root.rglob("*.json"))
    assert sorted(json.loads(c.read_text())["text"] for c in cached) == \
        sorted(verdict(b, {})[1]["choices"][0]["message"]["content"] for b in dying.given)

    # The server back, the same command: only the missing verdicts are asked for, and the table completes.
    with ScriptedServer(verdict, port=port) as back:
        again = cli.run(*cmd, timeout=120, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    (row,) = json.loads((out / "report.json").read_text())["rows"]
    verdicts = [json.loads(line) for line in open(row["judge"]["verdicts"])]
    assert len(verdicts) == row["judge"]["n_pairs"] == N_PAIRS and row["judge"]["missing"] == []
    orders = {(v["prompt"], v["a"], v["b"]) for v in verdicts} | {(v["prompt"], v["b"], v["a"]) for v in verdicts}
    assert len(orders) == 2 * N_PAIRS  # distinct requests, so counting requests counts verdicts
    asked = [order_of(b) for b in back.bodies if judging(b)]
    assert len(asked) == 2 * N_PAIRS - ANSWERED and set(asked) == orders - set(answered)
    assert f"{2 * N_PAIRS} orders, {ANSWERED} from the cache" in again.stdout
    assert [v for v in verdicts if v["prompt"] in {u["prompt"] for u in judged}] == judged  # the same verdicts
    assert "missing" not in (out / "report.md").read_text()
