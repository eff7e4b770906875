"""Launchers and the Optuna search through the real Hydra plugins (hydra-submitit-launcher, hydra-optuna-sweeper;
the `cluster` extra, in `dev` too): real multiruns in subprocesses, real alignpro jobs, W&B offline read back."""

import json
import os
import pickle
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import cli
from tests.conftest import CONF, ROOT
from tests.wandb_offline import read_run

# The smoke pipeline (tiny random models), one step, two held-out prompts: each job takes seconds.
SMOKE = ("experiment=smoke", "trainer.max_steps=1", "eval.n_prompts=2")


def multirun_env(env: dict | None = None) -> dict:
    """This process's environment for a multirun: jobs run side by side on 2 cores, and each job process starts its
    own W&B service, as on a cluster node (WANDB_SERVICE, set once this process has used W&B, would make them share
    this process's: a requeued job's resumed run would then be "in use")."""
    base = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**base, "OMP_NUM_THREADS": "1", **(env or {})}


def multirun(*overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return cli.run("alignpro.train", "--multirun", *overrides, timeout=290, env=multirun_env(env))


def wandb_pid(run_dir: Path) -> int | None:
    """The pid of the process that set up W&B for the run dir's run, as wandb's own debug log records it (None: W&B
    was set up before, by an earlier run in the same process)."""
    found = re.search(r"Configure stats pid to (\d+)", (run_dir / "wandb" / "debug.log").read_text())
    return int(found.group(1)) if found else None


def test_submitit_local_runs_each_job_in_its_own_process_in_parallel(tmp_path):
    sweep = tmp_path / "sweep"
    proc = multirun("launcher=submitit_local", *SMOKE, "lam=0.1,0.3", "logger.mode=offline", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [sweep / "0", sweep / "1"]
    # hydra.job.id is submitit's job id, the pid of the process it started for the job (the basic launcher's is the
    # job number); each W&B run was opened by another process (the basic launcher: both by the launching one)
    job_ids = [yaml.safe_load((j / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"] for j in jobs]
    assert all(isinstance(i, str) and int(i) > 1 for i in job_ids) and job_ids[0] != job_ids[1]
    pids = [wandb_pid(j) for j in jobs]
    assert None not in pids and pids[0] != pids[1]
    # in parallel: each job wrote its config (at start) before the other wrote its metrics (at the end)
    spans = [((j / "config.yaml").stat().st_mtime, (j / "metrics.json").stat().st_mtime) for j in jobs]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]
    runs = [read_run(j / "wandb") for j in jobs]
    assert runs[0]["id"] != runs[1]["id"]
    assert [r["config"]["lam"] for r in runs] == [0.1, 0.3]
    assert [json.loads((j / "metrics.json").read_text())["lam"] for j in jobs] == [0.1, 0.3]


def launcher_config(*overrides: str) -> dict:
    """``hydra.launcher`` as composed for ``overrides``, unresolved (${hydra.sweep.dir} needs a running sweep)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher)


def test_slurm_launcher_config_holds_the_sbatch_parameters():
    assert launcher_config("launcher=slurm")["partition"] is None  # clusters differ: the user names theirs
    launcher = launcher_config("launcher=slurm", "hydra.launcher.partition=gpu")
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert {k: launcher[k] for k in ("partition", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min",
                                     "signal_delay_s", "max_num_timeout", "array_parallelism", "name")} == {
        "partition": "gpu", "gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 64, "timeout_min": 240,
        "signal_delay_s": 120, "max_num_timeout": 3, "array_parallelism": 16, "name": "alignpro"}
    assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"


# SLURM without a cluster: stand-ins for its commands on PATH, keeping their state in $FAKE_SLURM. submitit writes
# the sbatch script and the job pickles and calls `sbatch` as it would on a login node; this sbatch keeps a copy of
# the script, as SLURM does, and starts the array's tasks at once, in the background (a real one returns before they
# start too). Each task runs the script, each attempt with its own log. `scontrol requeue <job>_<task>` (what
# submitit runs on USR2) records the requeue, and the task runs the script again once its attempt has exited, as
# SLURM requeues a running job. srun records the pid of the task's process: the one `--signal=USR2@<s>` signals.
SBATCH = r"""#!/bin/bash
script="$FAKE_SLURM/4242.sbatch.sh"
cp "$1" "$script"  # SLURM keeps the script it was given: submitit moves its file away once sbatch has returned
last=$(sed -n 's/^#SBATCH --array=0-\([0-9]*\)%.*/\1/p' "$script")
for task in $(seq 0 "${last:-0}"); do
  (attempt=0
   while :; do
     SLURM_JOB_ID=4242 SLURM_ARRAY_JOB_ID=4242 SLURM_ARRAY_TASK_ID=$task SLURM_RESTART_COUNT=$attempt \
       bash "$script" </dev/null >"$FAKE_SLURM/4242_$task.attempt$attempt.log" 2>&1
     rm "$FAKE_SLURM/requeued.4242_$task" 2>/dev/null || break
     attempt=$((attempt + 1))
   done) </dev/null >/dev/null 2>&1 &
done
echo "Submitted batch job 4242"
"""
SRUN = r"""#!/bin/bash
while [[ $1 == --* ]]; do case $1 in --output|--error) shift 2;; *) shift;; esac; done  # srun's options
echo $$ >"$FAKE_SLURM/task.${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.pid"
exec "$@"
"""
SCONTROL = r"""#!/bin/bash
echo "$*" >>"$FAKE_SLURM/scontrol.log"
if [[ $1 == requeue ]]; then touch "$FAKE_SLURM/requeued.$2"; fi
"""


def fake_slurm(tmp_path: Path) -> dict:
    """The environment under which `launcher=slurm` submits to the stand-ins above: PATH and FAKE_SLURM."""
    state = tmp_path / "slurm"
    (state / "bin").mkdir(parents=True)
    for name, text in (("sbatch", SBATCH), ("srun", SRUN), ("scontrol", SCONTROL)):
        (state / "bin" / name).write_text(text)
        (state / "bin" / name).chmod(stat.S_IRWXU)
    return {"PATH": f"{state / 'bin'}:{os.environ['PATH']}", "FAKE_SLURM": str(state)}


def test_slurm_multirun_submits_one_array_that_runs_the_real_jobs_and_a_requeue_reruns_in_place(tmp_path):
    from submitit.core.utils import DelayedSubmission

    from alignpro.train import main

    env = fake_slurm(tmp_path)
    # a ${now:} sweep dir, as by default: a requeued job must find the dir its first run resolved, not a new one
    proc = multirun("launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.array_parallelism=1",
                    '+hydra.launcher.srun_args=["--cpu-bind=none"]',  # a submitit option the plugin has no field for
                    *SMOKE, "lam=0.1,0.3", "logger.mode=offline", f"hydra.sweep.dir={tmp_path}/sweep-${{now:%H%M%S%f}}",
                    env=env)
    (sweep,) = tmp_path.glob("sweep-*")
    logs = "\n".join(p.read_text() for p in Path(env["FAKE_SLURM"]).glob("*.log"))
    assert proc.returncode == 0, proc.stderr[-3000:] + logs[-3000:]

    script = (sweep / ".submitit" / "4242" / "4242_submission.sh").read_text()
    for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=64GB", "--time=240",
                 "--array=0-1%1", "--signal=USR2@120", "--job-name=alignpro"):
        assert f"#SBATCH {line}\n" in script
    (srun,) = [line for line in script.splitlines() if line.startswith("srun ")]
    assert srun.endswith(f" --cpu-bind=none {sys.executable} -u -m submitit.core._submit {sweep}/.submitit/%j")

    # the pickled job: Hydra's launcher around alignpro.train's task function (`python -m` made it __main__.main,
    # which cloudpickle ships by value: its code is alignpro.train.main's), the job's overrides and the requeue
    # budget (max_num_timeout) it carries into SLURM
    job = DelayedSubmission.load(sweep / ".submitit" / "4242_0" / "4242_0_submitted.pkl")
    assert type(job.function).__name__ == "SlurmLauncher"
    assert job.function.task_function.__code__.co_code == main.__wrapped__.__code__.co_code
    assert "lam=0.1" in job.args[0] and job._timeout_countdown == 3 and job._timeout_min == 240

    for num, lam in ((0, 0.1), (1, 0.3)):  # the jobs ran: their run dirs, metrics and W&B runs
        assert json.loads((sweep / str(num) / "metrics.json").read_text())["lam"] == lam
        assert read_run(sweep / str(num) / "wandb")["config"]["lam"] == lam

    # A requeue runs the same script again as the same array task. It lands in the same run dir, where resume=auto
    # reads the finished job back: the same metrics, still one W&B run, no new dir, and the job returns the same
    # held-out reward to the sweep (submitit's result pickle: Hydra's JobReturn).
    metrics = (sweep / "0" / "metrics.json").read_text()
    task_env = {**os.environ, **env, "SLURM_JOB_ID": "4242", "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "0"}
    again = subprocess.run(["bash", str(sweep / ".submitit" / "4242" / "4242_submission.sh")], env=task_env,
                           capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("sweep-*")) == [sweep.name]
    assert (sweep / "0" / "metrics.json").read_text() == metrics
    assert len(list((sweep / "0" / "wandb").glob("offline-run-*"))) == 1
    outcome, ret = pickle.loads((sweep / ".submitit" / "4242_0" / "4242_0_0_result.pkl").read_bytes())
    assert outcome == "success" and ret.return_value == json.loads(metrics)["reward_mean"]


def logged_steps(run_dir: Path) -> list[int]:
    """Training steps in the run dir's train_log.jsonl so far (a line being written is not read)."""
    path = run_dir / "train_log.jsonl"
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("\n") and '"reward"' in line]


def bar_steps(log: Path) -> list[int]:
    """The steps the training progress bar showed in a job's log (tqdm redraws it in place: one line, many \\r)."""
    return sorted({int(n) for n in re.findall(r"align-pro:\s+\d+%\|[^|]*\|\s*(\d+)/\d+", log.read_text())})


@pytest.mark.timeout(900)
def test_a_slurm_job_preempted_mid_training_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """USR2 (SLURM's warning before a time limit or a preemption, `--signal=USR2@<signal_delay_s>`) reaches a job of
    the array after its checkpoint of step 2 and before step 4: submitit saves the job, runs `scontrol requeue` and
    exits; the requeued job runs the same overrides in the same run dir, and resume=auto continues from step 2, in
    the same W&B run. The array's other job is the same job with W&B disabled, left alone: the requeued job ends where
    it did."""
    from submitit.core.utils import DelayedSubmission

    from alignpro.run.directory import RunDir, read_jsonl
    from tests.wandb_offline import read_run_segments

    env = fake_slurm(tmp_path)
    state, sweep = Path(env["FAKE_SLURM"]), tmp_path / "sweep"
    cmd = [sys.executable, "-m", "alignpro.train", "--multirun", "launcher=slurm", "hydra.launcher.partition=gpu",
           "experiment=smoke", "trainer.max_steps=4", "trainer.save_steps=2", "eval.n_prompts=2",
           "logger.mode=offline,disabled", f"hydra.sweep.dir={sweep}"]
    with open(tmp_path / "sweep.out", "w") as out, open(tmp_path / "sweep.err", "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, env=multirun_env(env))

    def logs() -> str:
        return "\n".join(p.read_text() for p in (*tmp_path.glob("sweep.*"), *state.glob("*.log")))

    try:
        job, whole = sweep / "0", sweep / "1"
        deadline = time.monotonic() + 400  # about 40 s on 2 idle cores; a loaded machine takes many times that
        while 3 not in logged_steps(job):  # after the checkpoint of step 2, a step before that of step 4
            assert proc.poll() is None, logs()[-4000:]
            assert time.monotonic() < deadline, "step 3 not logged after 400 s\n" + logs()[-4000:]
            time.sleep(0.02)
        assert RunDir(job).newest_checkpoint()[0] == 2 and not RunDir(job).is_finished()
        os.kill(int((state / "task.4242_0.pid").read_text()), signal.SIGUSR2)
        proc.wait(timeout=290)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, logs()[-4000:]

    # submitit caught USR2, saved the job (a preemption: its requeue budget is untouched) and requeued it, once
    submitit = sweep / ".submitit"
    first, second = (state / f"4242_0.attempt{n}.log" for n in (0, 1))
    assert "Caught signal SIGUSR2" in first.read_text() and "this job is preempted" in first.read_text()
    assert "Requeued job 4242_0 (3 remaining timeouts)" in first.read_text()
    assert (state / "scontrol.log").read_text() == "requeue 4242_0\n"
    assert sorted(p.name for p in state.glob("*.log")) == ["4242_0.attempt0.log", "4242_0.attempt1.log",
                                                           "4242_1.attempt0.log", "scontrol.log"]
    assert DelayedSubmission.load(submitit / "4242_0" / "4242_0_submitted.pkl")._timeout_countdown == 3

    # The first attempt trained steps 1-3; the second resumed from checkpoint-2 and trained steps 3 and 4 only (its
    # progress bar starts at 2 of 4). The logs hold each step once, the W&B run is the same one, and the job finished.
    files, ref = RunDir(job), RunDir(whole)
    assert "resuming from" not in first.read_text()
    assert "resuming from" in second.read_text() and "checkpoint-2 (step 2 of 4)" in second.read_text()
    assert max(bar_steps(first)) == 3 and bar_steps(second) == [2, 3, 4]
    assert [r["step"] for r in files.read_train_log() if "reward" in r] == [1, 2, 3, 4]
    samples = read_jsonl(files.samples)
    assert [r["step"] for r in samples] == [s for s in range(4) for _ in range(4)]
    segments = read_run_segments(job / "wandb")
    assert len(segments) == 2 and {s["id"] for s in segments} == {files.read_wandb_id()}
    curves = [[row["train/global_step"] for row in s["history"] if "train/reward" in row] for s in segments]
    # the first attempt's run was finished on its way out (step 3 unless USR2 fell between its file row and its W&B
    # row); the second attempt's holds the whole curve
    assert curves[0] in ([1, 2], [1, 2, 3]) and curves[1] == [1, 2, 3, 4]
    assert files.is_finished() and not files.error.exists() and not files.checkpoints.exists()
    outcome, ret = pickle.loads((submitit / "4242_0" / "4242_0_0_result.pkl").read_bytes())
    assert outcome == "success" and ret.return_value == files.read_metrics()["reward_mean"]

    # ... and ended where the uninterrupted job did, sample for sample
    assert "resuming from" not in (state / "4242_1.attempt0.log").read_text()
    assert [r["reward"] for r in files.read_train_log() if "reward" in r] == \
        [r["reward"] for r in ref.read_train_log() if "reward" in r]
    assert samples == read_jsonl(ref.samples)
    assert files.read_eval_samples() == ref.read_eval_samples()
    got, want = files.read_metrics(), ref.read_metrics()
    for key in ("reward_mean", "reward_var", "reward_ci_low", "reward_ci_high", "n"):
        assert got[key] == want[key], key


# The search on the smoke models: a second experiment appended to the experiment group (search/lam fixes no model).
SEARCH = ("experiment=search/lam", "+experiment@_global_=smoke", "eval.n_prompts=2", "logger=none")


def trials(sweep: Path) -> list[dict]:
    """Each trial's job, in job order: λ and the learning rate of its resolved config, its metrics and its error.txt
    (None where absent)."""
    out = []
    for job in sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        cfg = yaml.safe_load((job / "config.yaml").read_text())
        metrics = json.loads((job / "metrics.json").read_text()) if (job / "metrics.json").exists() else None
        error = (job / "error.txt").read_text() if (job / "error.txt").exists() else None
        out.append({"lam": cfg["lam"], "lr": cfg["trainer"]["learning_rate"], "metrics": metrics, "error": error})
    return out


def test_optuna_search_maximises_the_heldout_reward_and_saves_its_best_lam(tmp_path):
    sweep = tmp_path / "search"
    proc = multirun(*SEARCH, "trainer.max_steps=1", "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = trials(sweep)
    assert len(done) == 3 and all(t["metrics"] for t in done)
    assert len({t["lam"] for t in done}) == 3 and all(0.01 <= t["lam"] <= 2.0 for t in done)
    assert all(1e-6 <= t["lr"] <= 1e-4 for t in done)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    top = max(done, key=lambda t: t["metrics"]["reward_mean"])
    assert best["best_value"] == pytest.approx(top["metrics"]["reward_mean"])
    assert best["best_params"] == {"lam": pytest.approx(top["lam"]), "trainer.learning_rate": pytest.approx(top["lr"])}
    assert f"Best value: {best['best_value']}" in proc.stdout + proc.stderr


def test_optuna_search_records_a_failed_trial_and_goes_on(tmp_path):
    """A learning rate far too large blows the prompter's weights up: the second step's gradient norm is NaN, and
    the run stops there (alignpro/run/numerics.py), as a diverged run does. The study records the trial as failed and
    goes on (max_failure_rate in search/lam.yaml); the best trial is one that finished."""
    sweep = tmp_path / "search"
    proc = multirun(*SEARCH, "trainer.max_steps=2", "hydra.sweeper.n_trials=3",
                    "trainer.learning_rate=choice(1e-5,1e30)", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = trials(sweep)
    assert len(done) == 3
    for t in done:
        assert (t["metrics"] is None) == (t["lr"] == 1e30)
        assert t["metrics"] is not None or "=nan logged at training step 2; the run stopped" in t["error"]
    # the sampler's seed 0 draws 1e-5 first and 1e30 second: a trial ran after a failed one
    assert done[0]["metrics"] is not None and done[1]["metrics"] is None
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    top = max((t for t in done if t["metrics"]), key=lambda t: t["metrics"]["reward_mean"])
    assert best["best_params"] == {"lam": pytest.approx(top["lam"]), "trainer.learning_rate": 1e-5}
    assert best["best_value"] == pytest.approx(top["metrics"]["reward_mean"])


def test_the_oracle_search_ranks_learning_rates_by_the_train_objective_never_the_heldout_reward(tmp_path):
    """experiment=search/oracle appended to a world: each trial trains the oracle (method=rlhf) and returns eq. 9's
    objective on the train prompts, the mean of the last quarter of its logged steps; the best learning rate is the
    one with the best such value, whatever the held-out rewards say."""
    from alignpro.run.directory import RunDir
    from alignpro.train import train_objective

    sweep = tmp_path / "search"
    proc = multirun("experiment=smoke", "+experiment@_global_=search/oracle", "logger=none", "eval.n_prompts=2",
                    "trainer.max_steps=4", "hydra.sweeper.n_trials=2", "trainer.learning_rate=choice(1e-4,3e-3)",
                    f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert len(jobs) == 2
    done = []
    for job in jobs:
        cfg = yaml.safe_load((job / "config.yaml").read_text())
        assert cfg["method"]["name"] == "rlhf" and cfg["sweep_objective"] == "train_objective"
        curve = [json.loads(line)["objective"] for line in (job / "train_log.jsonl").read_text().splitlines()
                 if "objective" in json.loads(line)]
        assert len(curve) == 4 and train_objective(RunDir(job)) == pytest.approx(curve[-1])  # the last quarter: 1
        done.append((cfg["trainer"]["learning_rate"], train_objective(RunDir(job)),
                     json.loads((job / "metrics.json").read_text())["reward_mean"]))
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    top = max(done, key=lambda t: t[1])
    assert best["best_params"]["trainer.learning_rate"] == pytest.approx(top[0])
    assert best["best_value"] == pytest.approx(top[1])
    assert {t[2] for t in done}.isdisjoint({best["best_value"]})  # not a held-out reward


@pytest.mark.parametrize("name, kind, extra", [
    ("multi_gpu", "MULTI_GPU", {}),
    ("zero3", "DEEPSPEED", {"zero_stage": 3, "zero3_init_flag": True, "zero3_save_16bit_model": True}),
])
def test_shipped_accelerate_configs_are_read_by_accelerate(name, kind, extra):
    """`accelerate launch --config_file launchers/accelerate/<name>.yaml` reads these files with this loader."""
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ROOT / "launchers" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.name == kind and cfg.num_processes == 8 and cfg.use_cpu is False
    assert {k: cfg.deepspeed_config.get(k) for k in extra} == extra
