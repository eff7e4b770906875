"""ρ_sft: a short supervised stage that teaches a small prompter what a rewrite looks like (``sft`` config group).

The paper regularises the prompter towards "a baseline supervised fine-tuned prompter": KL(ρ ‖ ρ_sft) in eq. 9,
the RLHF recipe's SFT → reward → RL order. For the paper's 1.5–3.8B instruct prompters that baseline is the model
itself. A 135M prompter, asked for a rewrite, mostly answers the question or rambles, so ρ_ref almost never
samples a rewrite worth reinforcing and RL has nothing to find. ``sft=instructions`` fixes that before RL starts:

    demonstrations  (meta-prompt(x), d)   for the train prompts x, d drawn uniformly from ``sft.instructions``
    ρ_sft = argmin  −Σ log ρ(d | meta-prompt(x))            (TRL's SFTTrainer, loss on the completion only)

With ``prompter.rewrite=append`` the demonstration d is the instruction itself (x′ = x + d); with ``full`` it is the
whole rewrite x + " " + d. ρ_sft then samples every instruction of the menu about equally, so it is an unbiased
starting point: which instruction the frozen model rewards is left to RL to find, and λ·KL holds the trained
prompter to ρ_sft. ``base_prompter`` then means ρ_sft. The demonstrations never use held-out prompts.

The result is cached like the BT reward (``$ALIGNPRO_CACHE/sft/<prompter>-<key>``, key = base weights, meta-prompt,
mode, the ``sft`` block and the train prompts), with its loss curve (``sft_log.jsonl``), which every run that uses
it logs to W&B as ``sft/*``.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from alignpro.config.schema import PrompterConfig, SFTConfig
from alignpro.models.assets import AssetError
from alignpro.models.cache import build_once, cache_dir, fingerprint
from alignpro.models.prompter import compose_rewrite, prompter_path, rewrite_conversation
from alignpro.run.directory import world_size

if TYPE_CHECKING:
    from alignpro.methods.base import Job

log = logging.getLogger("alignpro")


def normalise(text: str) -> str:
    return " ".join(text.split()).strip().lower()


def instruction_menu(sft_cfg: SFTConfig) -> list[str]:
    """The config's instruction menu (``sft.instructions``), or, for a config without one (``sft=none``), the menu
    of ``sft=instructions`` (conf/sft/instructions.yaml)."""
    if sft_cfg.instructions:
        return list(sft_cfg.instructions)
    from omegaconf import OmegaConf

    from alignpro import CONF_DIR

    return list(OmegaConf.load(Path(CONF_DIR) / "sft" / "instructions.yaml").instructions)


def menu_rate(xs: list[str], rewrites: list[str], instructions: list[str]) -> float:
    """Share of rewrites x′ that are x followed by one of the menu's instructions (case and spacing aside): how
    often a prompter writes a usable rewrite rather than an answer or a ramble. Either rewrite mode qualifies."""
    menu = {normalise(i) for i in instructions}
    hits = [normalise(xp).startswith(normalise(x)) and normalise(xp)[len(normalise(x)):].strip() in menu
            for x, xp in zip(xs, rewrites, strict=True)]
    return sum(hits) / len(hits) if hits else float("nan")


def demonstrations(train_records: list[dict], prompter_cfg: PrompterConfig, sft_cfg: SFTConfig) -> list[dict]:
    """Prompt-completion rows for TRL's SFTTrainer: each train prompt (cycled up to ``n_examples``) with an
    instruction drawn uniformly (seeded) from the menu."""
    rng = random.Random(sft_cfg.seed)
    prompts = [r["prompt"] for r in train_records]
    mode = prompter_cfg.rewrite
    rows = []
    for i in range(sft_cfg.n_examples):
        x = prompts[i % len(prompts)]
        d = rng.choice(list(sft_cfg.instructions))
        target = d if mode == "append" else compose_rewrite(x, d, "append")  # full: the whole x′ = x + d
        rows.append({"prompt": rewrite_conversation(x, prompter_cfg.meta_prompt, prompter_cfg.system),
                     "completion": [{"role": "assistant", "content": target}]})
    return rows


def sft_prompter_path(prompter_cfg: PrompterConfig, sft_cfg: SFTConfig, train_records: list[dict], device: str,
                      log_fn: Callable[[dict], None] | None = None) -> str:
    """Where ρ_ref's weights are: the prompter's own (``sft.enabled: false``) or ρ_sft, trained once and cached."""
    base = prompter_path(prompter_cfg)
    if not sft_cfg.enabled:
        return base
    from omegaconf import OmegaConf

    spec = OmegaConf.to_container(sft_cfg, resolve=True)
    key = fingerprint(base, prompter_cfg.meta_prompt, prompter_cfg.rewrite, prompter_cfg.system,
                      spec, [r["prompt"] for r in train_records])
    target = cache_dir() / "sft" / f"{prompter_cfg.name}-{key}"
    if world_size() > 1 and not (target / "stats.json").is_file():
        # One process would train alone inside the job's process group while the others wait for its lock: a hang.
        raise AssetError(f"rho_sft is not in the cache yet ({target}); a multi-process job cannot train it. Train it "
                           "once in a single process with the same overrides (e.g. method=base_prompter "
                           "eval.n_prompts=1), then launch again")
    trained: list[Path] = []

    def build(tmp: Path) -> None:
        train_sft(base, demonstrations(train_records, prompter_cfg, sft_cfg), sft_cfg, device, tmp)
        trained.append(tmp)

    build_once(target, build, ready="stats.json")
    cached = not trained  # in the cache already, or trained by another job while this one waited for the lock
    stats = json.loads((target / "stats.json").read_text())
    log.info("rho_sft %s: %s (%d demonstrations, loss %.3f -> %.3f)", "from the cache" if cached else "trained",
             target, stats["n_examples"], stats["first_loss"], stats["final_loss"])
    if log_fn is not None:
        for row in (json.loads(line) for line in (target / "sft_log.jsonl").read_text().splitlines() if line):
            if "loss" in row:  # the per-step rows (the last row is the trainer's run summary)
                log_fn({f"sft/{k}": v for k, v in row.items()})
    return str(target)


def reference_prompter(job: Job) -> str:
    """ρ_ref of a prompter arm (``base_prompter``, ``alignpro``): its weights' path, timed as the ``sft`` stage.
    Re-seeded after, so a ρ_sft trained now or read from the cache leaves the same random stream behind it."""
    from transformers import set_seed

    with job.timer("sft"):
        path = sft_prompter_path(job.cfg.prompter, job.cfg.sft, job.train_records, job.device, job.log)
    set_seed(job.cfg.seed)
    return path


def train_sft(base: str, rows: list[dict], sft_cfg: SFTConfig, device: str, out: Path) -> None:
    """Full fine-tuning of the prompter on the demonstrations, saved into ``out`` with ``stats.json`` and
    ``sft_log.jsonl`` (:func:`sft_prompter_path` hands it the temp dir of :func:`alignpro.models.cache.build_once`)."""
    import torch
    from datasets import Dataset, disable_progress_bars
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from alignpro.methods.rl import RewardKLProgress, StepLog

    disable_progress_bars()  # per-stage "Tokenizing train dataset" bars; the SFT bar below shows the work
    on_cpu = device == "cpu"
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=sft_cfg.epochs,
        per_device_train_batch_size=sft_cfg.batch_size,
        learning_rate=sft_cfg.learning_rate,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to=[],  # the curve reaches W&B through sft_log.jsonl, once per run that uses this ρ_sft
        disable_tqdm=True,
        seed=sft_cfg.seed,
        data_seed=sft_cfg.seed,
        use_cpu=on_cpu,
        bf16=not on_cpu,
        max_length=256,
        activation_checkpointing=False,  # transformers 5 name; TRL's default would only cost time at these sizes
        dataloader_num_workers=0,
        model_init_kwargs={"dtype": torch.float32},  # full fine-tuning: fp32 master weights (see rl.training_dtype)
    )
    start = time.perf_counter()
    trainer = SFTTrainer(model=base, args=args, train_dataset=Dataset.from_list(rows),
                         callbacks=[RewardKLProgress("rho_sft", show=(("loss", "loss"),)),
                                    StepLog(out / "sft_log.jsonl")])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.save_model(str(out))
    losses = [json.loads(line).get("loss") for line in (out / "sft_log.jsonl").read_text().splitlines() if line]
    losses = [v for v in losses if isinstance(v, (int, float))]
    stats = {"n_examples": len(rows), "steps": trainer.state.global_step, "final_loss": losses[-1] if losses else None,
             "first_loss": losses[0] if losses else None, "seconds": round(time.perf_counter() - start, 1),
             "instructions": list(sft_cfg.instructions), "base": base}
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
