"""``python -m alignpro.tools.theory``: the theory lab's command. It checks Theorem 6.1 on random worlds
(:mod:`alignpro.tools.theory_world`), trains the token world's prompter through TRL for each λ
(:mod:`alignpro.tools.theory_trl`; ``--trainer rloo`` or ``grpo``), and plots the trained prompters against the
closed-form reward-KL frontier.

Both trainers, as alignpro configures them, stop at Lemma 5.1's ρ*: RLOO puts λ·KL in the reward, GRPO puts a k3
KL in the loss whose importance-ratio weighting (TRL's ``use_bias_correction_kl``, on by default) makes its gradient
that of KL(ρ‖ρ_ref); its group-mean baseline shifts λ to λ·k/(k − 1). Without that weighting GRPO would maximise
the KL with its arguments swapped and stop elsewhere (theory_world's docstring; tests/test_theory.py measures
both)."""

from __future__ import annotations

import math
import shutil

import numpy as np

from alignpro.run.directory import save_figure, write_atomic
from alignpro.run.errors import ArgumentParser, BadInput, run_cli
from alignpro.tools import theory_world
from alignpro.tools.theory_trl import token_world, train_through_trl
from alignpro.tools.theory_world import expected_reward, kl, optimal_prompter, property_check


def frontier_plot(trained: list[dict], out: str, r_max: float = 2.0, world_seed: int = 0,
                  trainer: str = "rloo") -> str:
    """Reward vs KL(ρ‖ρ_ref): the closed-form ρ*(λ) curve and the prompters trained through TRL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model_dir, w, _, _ = token_world(seed=world_seed, r_max=r_max)
    shutil.rmtree(model_dir, ignore_errors=True)
    lams = np.logspace(-2.3, 1.3, 80)
    stars = [optimal_prompter(w, lam) for lam in lams]
    curve = [(float(w.p_x @ kl(rho, w.rho_ref)), float(w.p_x @ (rho * expected_reward(w)).sum(-1))) for rho in stars]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(*zip(*curve, strict=True), color="0.3", label="closed form ρ*(λ) (Lemma 5.1)")
    for t in trained:
        ax.scatter(t["kl_star"], t["reward_star"], marker="o", s=90, facecolors="none", edgecolors="C0")
        ax.scatter(t["kl_trained"], t["reward_trained"], marker="x", s=60, color="C3")
        ax.annotate(f"λ={t['lam']:g}", (t["kl_star"], t["reward_star"]), textcoords="offset points", xytext=(6, -12))
    ax.scatter([], [], marker="o", facecolors="none", edgecolors="C0", label="ρ*(λ)")
    ax.scatter([], [], marker="x", color="C3", label=f"trained with TRL {trainer.upper()}, beta = λ")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlabel("E_x KL(ρ(·|x) ‖ ρ_ref(·|x))  [nats]")
    ax.set_ylabel("E_x E_{x′∼ρ} R(x, x′)")
    ax.set_title("Align-Pro token world: reward-KL frontier")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> dict:
    import json
    from pathlib import Path

    ap = ArgumentParser(prog="python -m alignpro.tools.theory", description=theory_world.__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    ap.add_argument("--lams", type=float, nargs="+", default=[0.1, 0.5, 2.0], help="λ values trained through TRL")
    ap.add_argument("--trainer", choices=["rloo", "grpo"], default="rloo", help="alignpro's trainer group used")
    ap.add_argument("--steps", type=int, default=1600, help="training steps per λ")
    ap.add_argument("--k", type=int, default=64, help="rewrites per prompt per step")
    ap.add_argument("--worlds", type=int, default=1000, help="random worlds for the Theorem 6.1 check")
    ap.add_argument("--out", default="outputs/theory", help="folder for the plot and the full results")
    args = ap.parse_args(argv)
    checks = [("--lams", lam, math.isfinite(lam) and lam > 0, "> 0 (a finite KL weight)") for lam in args.lams]
    checks += [("--steps", args.steps, args.steps >= 1, "≥ 1"),
               ("--k", args.k, args.k >= 2, "≥ 2 (the group baseline needs two rewrites)"),
               ("--worlds", args.worlds, args.worlds >= 1, "≥ 1")]
    for flag, value, ok, valid in checks:  # before any training: each λ takes minutes
        if not ok:
            raise BadInput(f"{flag} {value:g} is invalid: it must be {valid}")

    from transformers.utils import logging as hf_logging

    from alignpro.methods.rl import quiet_library_noise

    quiet_library_noise()
    hf_logging.set_verbosity_error()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prop = property_check(args.worlds)
    print(f"Theorem 6.1 on {prop['n_worlds']} random worlds: {prop['bound_violations']} violations, slack min "
          f"{prop['slack_min']:.4f}, median {prop['slack_median']:.3f}", flush=True)
    trained = []
    for lam in args.lams:
        res = train_through_trl(lam, steps=args.steps, k=args.k, trainer=args.trainer)
        trained.append(res)
        print(f"λ={lam:g}: TV(trained, ρ*) per prompt {[round(t, 4) for t in res['tv_per_prompt']]} "
              f"(ρ_ref was {[round(t, 3) for t in res['tv_ref_to_star']]}); KL {res['kl_trained']:.4f} vs "
              f"{res['kl_star']:.4f}", flush=True)
    plot = frontier_plot(trained, str(out / "reward_vs_kl.png"), trainer=args.trainer)
    summary = {"max_tv_to_closed_form": max(max(t["tv_per_prompt"]) for t in trained),
               "tv_per_lambda": {str(t["lam"]): max(t["tv_per_prompt"]) for t in trained},
               **prop, "plot": plot}
    write_atomic(out / "theory.json", json.dumps({"summary": summary, "trained": trained}, indent=2))
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main)
