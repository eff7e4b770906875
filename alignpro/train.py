"""Train (or just evaluate) one arm of Align-Pro, end to end, from one Hydra config.

    python -m alignpro.train                                   # embedded offline default (SmolLM2 + MiniLM BT)
    python -m alignpro.train experiment=smoke                   # tiny random models, < 1 min on CPU
    python -m alignpro.train prompter=qwen25_1_5b frozen=llama31_8b dataset=helpsteer lam=0.1
    python -m alignpro.train --multirun lam=0.05,0.2,1.0 seed=0,1

Pipeline, the same for every arm: validate the config → data → reward r(x, y) → frozen π_F (unless the arm trains
its own) → the arm (``method``: alignpro/methods/; eq. 9 is in alignpro/methods/alignpro.py) → held-out evaluation →
``metrics.json`` and W&B (the run dir's files: alignpro/run/directory.py).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from alignpro import CONF_DIR
from alignpro.config.schema import Config
from alignpro.config.validate import ConfigError, validate
from alignpro.data.preferences import load_splits, require_pairs
from alignpro.methods.base import Job
from alignpro.methods.registry import build_method
from alignpro.methods.rl import check_trainer_extra, resolve_max_steps
from alignpro.models.api import ChatClient
from alignpro.models.assets import pick_device
from alignpro.run import tracking
from alignpro.run.directory import Metrics, RunDir, flatten, process_rank, world_size
from alignpro.run.errors import JobFailed, describe, run_cli
from alignpro.run.secrets import redact_text
from alignpro.run.timing import StageTimer

log = logging.getLogger("alignpro")


def run_context() -> dict:
    """Run dir, W&B group and name from Hydra: one group per sweep, one name per job's overrides."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = hc.job.override_dirname or "defaults"
    return {
        "run_dir": Path(hc.runtime.output_dir),
        "multirun": multirun,
        "group": f"sweep-{Path(hc.sweep.dir).name}" if multirun else f"run-{Path(hc.runtime.output_dir).name}",
        "name": f"{hc.job.num}:{overrides}" if multirun else overrides,
    }


def train(cfg: DictConfig, run_dir: Path, group: str = "local", name: str = "run") -> Metrics:
    """Run one job; returns the evaluation summary (also written to ``run_dir/metrics.json``)."""
    cfg = validate(cfg)  # typed by the schema and checked, before anything loads
    files = RunDir(run_dir)
    # Cheap, and catches empty data / missing fields before models load; trainer.max_steps=paper counts its rows.
    splits = load_splits(cfg.dataset)
    # r's pairs: the run's dataset, or another's (reward.fit_dataset: a world's reward on other prompts)
    fit = splits if cfg.reward.fit_dataset is None else load_splits(cfg.reward.fit_dataset)
    if cfg.reward.kind == "bt_encoder":
        require_pairs(fit, cfg.reward.name)
    cfg.trainer.max_steps = resolve_max_steps(cfg.trainer, len(splits.train))
    check_resume(files, cfg)  # a used run dir: continued by the same job only
    if files.is_finished():
        log.info("%s is finished: its metrics.json is read back, the job is not run again", run_dir)
        return files.read_metrics()
    files.clear_error()
    # The model stack loads here, once the config is checked: `--cfg job`, a refused override and the
    # sweep preflight never wait for torch.
    from transformers import set_seed

    from alignpro.methods.rl import quiet_library_noise
    from alignpro.models.frozen import build_frozen
    from alignpro.models.generation import GenerationEngine
    from alignpro.models.reward import build_reward
    from alignpro.models.trained import CARD, write_card
    from alignpro.report.evaluate import eval_samplings, evaluate, heldout_prompts
    from alignpro.report.summary import complete_metrics, record

    device = pick_device(cfg.device)
    facts, method = cfg.method, build_method(cfg.method)
    check_outside_parts(cfg, files, facts.needs_frozen)
    if facts.trains:
        check_trainer_extra(cfg.trainer)
    quiet_library_noise()
    set_seed(cfg.seed)
    timer = StageTimer()
    t0 = time.perf_counter()
    log.info("run dir: %s", run_dir)
    main_process = process_rank() == 0  # accelerate launch: one run dir, one W&B run, one evaluation (rank 0)
    tracking_run = tracking.start(cfg, files, group=group, name=name, job_type=facts.name) if main_process \
        else tracking.Tracker(files.root)
    with tracking_run as tracker:
        # r(x, y): the embedded BT reward is trained on the train split's pairs (cached) and checked on held-out.
        with timer("reward_setup"):
            reward = build_reward(cfg.reward, fit.train, fit.heldout, device)
        rm_stats = getattr(reward, "stats", None) or {}
        tracker.log({f"reward_model/{k}": v for k, v in rm_stats.items() if isinstance(v, (int, float))})
        log.info("reward %s ready: %s", cfg.reward.name, {k: rm_stats[k] for k in rm_stats if "accuracy" in k})

        # π_F, unless the arm trains its own copy of it (``needs_frozen`` false).
        engine = GenerationEngine.from_config(cfg.generation)
        frozen = build_frozen(cfg.frozen, device, engine=engine) if facts.needs_frozen else None

        # The method trains what it trains and returns the arm to evaluate. Re-seeded here and before the
        # evaluation so a stage's random draws never depend on what ran before it (a reward fitted now or read
        # from the cache, a model built in-process or loaded): cold and warm caches give the same run.
        set_seed(cfg.seed)
        arm = method.run(Job(cfg, splits.train, reward, frozen, files, device, tracker, timer))
        if not main_process:
            log.info("process %d: training done; process 0 evaluates", process_rank())
            return {}

        # Held-out evaluation with the paper's sampling (D8), identical for every arm.
        answer, rewrite = eval_samplings(cfg.eval, cfg.frozen.max_new_tokens, cfg.prompter.max_new_tokens)
        prompts = heldout_prompts(splits.heldout, cfg.eval)
        set_seed(cfg.seed)
        kinds = {r["prompt"]: r["kind"] for r in splits.heldout if r.get("kind")}  # reports break results down by it
        with timer("evaluation"):
            summary, samples = evaluate(arm, prompts, reward, answer, rewrite, cfg.eval.samples_per_prompt,
                                        cfg.eval.bootstrap_resamples, cfg.seed, shift=cfg.eval.answer_shift,
                                        run_dir=files, kinds=kinds)
        # metrics.json: the evaluation's summary and the job's facts (data, reward model, API counts, timings)
        summary = complete_metrics(summary, cfg, arm, samples, dataset=splits.info, reward_model=rm_stats,
                                   frozen=frozen, timer=timer, started=t0)
        record(files, tracker, summary, samples)
        if (files.model("prompter") / CARD).is_file():  # the saved prompter's card gets its held-out result,
            card = write_card(files.model("prompter"), tracking.resolved(cfg), summary)
            if tracker.run is not None:  # and goes to W&B as a model artifact (python -m alignpro.serve wandb:<ref>)
                tracker.artifact(files.model("prompter"), f"prompter-{tracker.run.id}", "model", card)
        log.info("eval %s: reward %.4f [%.4f, %.4f] var %.4f (n=%d) -> %s", arm.name, summary["reward_mean"],
                 summary["reward_ci_low"], summary["reward_ci_high"], summary["reward_var"], summary["n"],
                 files.metrics)
    if files.checkpoints.exists() and not cfg.trainer.keep_checkpoints:  # only a resume needs them
        shutil.rmtree(files.checkpoints)
    return summary


def check_outside_parts(cfg: Config, files: RunDir, needs_frozen: bool) -> None:
    """What the config points at outside itself, checked before any model loads: the run dir takes files, and a
    frozen model behind an API answers (one cheap request: alignpro.models.api.ChatClient.preflight)."""
    files.check_writable()
    if needs_frozen and cfg.frozen.backend == "openai_api":
        ChatClient.from_config(cfg.frozen).preflight("frozen")


def check_resume(files: RunDir, cfg: Config) -> None:
    """A run dir that holds a job already is continued only by the same job (``resume=auto``): another config
    would resume a checkpoint, logs and W&B run that are not its own."""
    if not files.was_started():
        return
    if cfg.resume == "never":
        raise ConfigError(f"resume=never is invalid here: {files.root} already holds a run; use a new run dir "
                          "(hydra.run.dir=..., or hydra.sweep.dir=... for a sweep) or resume=auto to continue it")
    before, now = flatten(files.read_config()), flatten(tracking.resolved(cfg))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k) and k != "resume")
    if changed:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:3])
        raise ConfigError(f"{files.root} holds a run of another config ({shown}{', ...' if len(changed) > 3 else ''});"
                          " resume=auto continues only the same job: use a new run dir for a new one")


def shared_run_dir(own: Path, cpu: bool) -> Path:
    """Under ``accelerate launch`` every process composed its own ``${now:...}`` run dir; all use process 0's (the
    checkpoints, logs and rng states of every rank must meet in one folder). Another process's own folder, holding
    only Hydra's files, is removed."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState(cpu=cpu)  # joins the launcher's process group: gloo on CPU, nccl on GPUs, as TRL will
    (shared,) = broadcast_object_list([str(own)], from_process=0)
    shared = Path(shared)
    if not state.is_main_process and shared.resolve() != own.resolve():
        shutil.rmtree(own, ignore_errors=True)
    return shared


def train_objective(files: RunDir) -> float:
    """Eq. 9's objective, r − λ·KL(ρ‖ρ_ref), on the train prompts: the mean of its logged value over the last
    quarter of the training steps (one step is too noisy to rank learning rates by). NaN without logged steps."""
    values = [row["objective"] for row in files.read_train_log() if "objective" in row]
    tail = values[-max(1, len(values) // 4):]
    return sum(tail) / len(tail) if tail else math.nan


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra wrapper; returns what a sweeper optimises (``sweep_objective``): the held-out mean reward, or eq. 9's
    objective on the train prompts."""
    return run_job(cfg)


def run_job(cfg: DictConfig) -> float:
    """One job of a Hydra run or sweep (:func:`main`; alignpro.evaluate too): :func:`train` in the job's run dir,
    a failure recorded in it."""
    ctx = run_context()
    if world_size() > 1:
        ctx["run_dir"] = shared_run_dir(ctx["run_dir"], cpu=pick_device(str(cfg.device)) == "cpu")
    tracking.scrub_hydra_dir(ctx["run_dir"])
    try:
        # Processes other than 0 of a multi-process job do not evaluate: NaN.
        summary = train(cfg, ctx["run_dir"], ctx["group"], ctx["name"])
        if cfg.sweep_objective == "train_objective":
            return train_objective(RunDir(ctx["run_dir"]))
        return summary.get("reward_mean", math.nan)
    except BaseException as err:
        # The job dir says why it has no metrics.json, so a sweep's report can name the failed cells and why; the
        # traceback goes there too, since the terminal shows one line (alignpro/run/errors.py).
        code, line = describe(err)
        trace = "".join(traceback.format_exception(err))
        try:
            RunDir(ctx["run_dir"]).write_error(redact_text(f"{line}\n\n{trace}"))
        except OSError:  # a run dir that takes no files (the error says so): the line alone tells what happened
            pass
        if not ctx["multirun"] or not isinstance(err, Exception):
            raise
        # In a multirun an Exception (not SystemExit) lets Hydra's sweeper finish the other jobs, then raise the
        # first failure: its line names the job.
        raise JobFailed(f"sweep job {ctx['name']} failed: {line} (all of it: {ctx['run_dir'] / 'error.txt'}; "
                        "the other jobs ran)", code) from err


def cli() -> None:
    """``python -m alignpro.train`` and ``alignpro-train``: a failure is one line and an exit code."""
    run_cli(main)


if __name__ == "__main__":
    cli()
