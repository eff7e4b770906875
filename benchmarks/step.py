"""One Align-Pro step of the demo's shape, the embedded default against the demo, side by side in one process.

    python benchmarks/step.py            # 4 timed steps per configuration after one warm-up step, ~5 min on 2 cores
    python benchmarks/step.py --steps 2  # quicker

Both configurations train the real SmolLM2-135M prompter in front of the real SmolLM2-135M frozen model through
``alignpro.methods.alignpro`` (TRL RLOO, its reward function, the BT reward on the steerable world), with the demo's
batch: ``trainer.prompts_per_step`` × ``trainer.num_generations`` rewrites per step.

* **embedded**: the embedded default's configuration (``experiment=embedded``): the paper's meta-prompt and full
  rewrites (40 tokens), full fine-tuning of the prompter (fp32 AdamW, a second copy as ρ_ref), 48-token answers;
* **embedded, demo answers**: the same with the demo's answer length, which the steerable world needs (so the ratio
  isolates what the demo's configuration changes rather than the world's answer length);
* **demo**: ``experiment=steer``: a one-instruction rewrite appended to x (16 tokens at most) from ρ_sft, LoRA r 16,
  answers of the demo's length in one batch.

Per configuration: wall seconds per step (median of the timed steps) and its split into the prompter's sampling,
the frozen model's answers, the reward and the rest (log-prob passes of ρ and ρ_ref, backward, optimizer step).
Results go to ``benchmarks/results/step-<time>.json``; the last line printed is the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from transformers import TrainerCallback, set_seed

from alignpro.config.compose import compose_config
from alignpro.data.preferences import load_splits
from alignpro.methods.alignpro import AlignProReward
from alignpro.methods.rl import fit, quiet_library_noise
from alignpro.methods.sft import sft_prompter_path
from alignpro.models.frozen import build_frozen
from alignpro.models.generation import GenerationEngine
from alignpro.models.prompter import rewrite_conversation
from alignpro.models.reward import build_reward
from alignpro.models.sampling import Sampling
from alignpro.run.directory import RunDir, SampleLog
from alignpro.run.timing import StageTimer

SHAPE = ("trainer.num_generations=4", "trainer.prompts_per_step=2")  # the demo's batch (conf/experiment/steer.yaml)


class StepClock(TrainerCallback):
    """Wall time of each optimizer step, and the stage timer's totals at each step's end (for the split)."""

    def __init__(self, timer: StageTimer):
        self.timer, self.steps, self.splits, self._t = timer, [], [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()
        self._before = dict(self.timer.seconds)

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(time.perf_counter() - self._t)
        self.splits.append({k: v - self._before.get(k, 0.0) for k, v in self.timer.seconds.items()})


def run(name: str, overrides: list[str], steps: int, reward) -> dict:
    cfg = compose_config([*overrides, *SHAPE, f"trainer.max_steps={steps + 1}", "logger=none", "device=cpu"])
    splits = load_splits(cfg.dataset)
    frozen = build_frozen(cfg.frozen, "cpu", engine=GenerationEngine.from_config(cfg.get("generation")))
    p = cfg.prompter
    policy = sft_prompter_path(p, cfg.get("sft"), splits.train, "cpu")
    rows = [{"prompt": rewrite_conversation(r["prompt"], p.meta_prompt, p.get("system")), "x": r["prompt"]}
            for r in splits.train]
    timer = StageTimer()
    clock = StepClock(timer)
    set_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        reward_fn = AlignProReward(frozen, reward, "original", SampleLog(None), timer, p.get("rewrite", "full"))
        fit(cfg, beta=cfg.lam, policy_path=policy, rows=rows, reward_fn=reward_fn,
            sampling=Sampling.from_config(p.sampling, p.max_new_tokens), dtype=p.dtype, run_dir=RunDir(Path(tmp)),
            device="cpu", timer=timer, label=name,
            lora=p.get("lora"), callbacks=[clock])
    timed = list(range(1, len(clock.steps)))  # step 0 warms up allocators and caches
    split = {k: statistics.median(clock.splits[i].get(k, 0.0) for i in timed)
             for k in ("policy_generation", "frozen_generation", "reward")}
    total = statistics.median(clock.steps[i] for i in timed)
    split["logprobs_backward_optimizer"] = total - sum(split.values())
    return {"name": name, "overrides": overrides, "seconds_per_step": total, "steps": [clock.steps[i] for i in timed],
            "split": split, "rewrite_tokens": p.max_new_tokens, "answer_tokens": cfg.frozen.max_new_tokens,
            "lora": p.get("lora") is not None, "meta_prompt": p.meta_prompt_name}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per configuration (after one warm-up step)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    quiet_library_noise()
    demo = compose_config(["experiment=steer"])
    splits = load_splits(demo.dataset)
    reward = build_reward(demo.reward, splits.train, splits.heldout, "cpu")  # one reward for all: the world's
    answer = f"frozen.max_new_tokens={demo.frozen.max_new_tokens}"
    configs = [("embedded", ["experiment=embedded", "dataset=concise"]),
               ("embedded, demo answers", ["experiment=embedded", "dataset=concise", answer]),
               ("demo", ["experiment=steer"])]
    results = [run(name, ov, args.steps, reward) for name, ov in configs]
    print(f"\n{'configuration':22} {'s/step':>7} {'prompter':>9} {'frozen':>7} {'reward':>7} {'update':>7}")
    for r in results:
        s = r["split"]
        print(f"{r['name']:22} {r['seconds_per_step']:7.2f} {s['policy_generation']:9.2f} "
              f"{s['frozen_generation']:7.2f} {s['reward']:7.2f} {s['logprobs_backward_optimizer']:7.2f}")
    embedded, same_answers, ours = (r["seconds_per_step"] for r in results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"step-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"shape": SHAPE, "results": results, "ratio_embedded_over_demo": embedded / ours,
                                "ratio_same_answers_over_demo": same_answers / ours}, indent=2))
    print(f"results: {path}")
    print(f"step ratio embedded / demo: {embedded / ours:.2f}x "
          f"(with the demo's answer length: {same_answers / ours:.2f}x)")


if __name__ == "__main__":
    main()
