"""An exact discrete world for Align-Pro: Lemma 5.1 and Theorem 6.1 computed in closed form.

Finite prompts x ∈ X, a finite prompt space S that the frozen model reads (rewrites x′ ∈ S; X ⊆ S, so the frozen
model can also answer x itself), finite responses y ∈ Y, and tables:

    P(x)            prompt distribution                     ρ_ref(x′|x)   reference prompter
    π_F(y|s)        frozen model, s ∈ S                     r(x, y) ∈ [0, r_max]   reward

Everything of the paper is then a finite sum:

    R(x, x′)  = Σ_y π_F(y|x′) r(x, y)                                        (Lemma 5.1's R)
    ρ*(x′|x) ∝ ρ_ref(x′|x) exp(R(x, x′)/λ)                                    (Lemma 5.1, maximiser of eq. 9)
    π*(y|x)  ∝ π_F(y|x) exp(r(x, y)/β)                                       (eq. 4, the RLHF oracle)
    π̃_ρ(y|x) = Σ_x′ ρ(x′|x) π_F(y|x′)                                        (eq. 3, prompter + frozen model)
    J(π)      = Σ_x P(x) Σ_y π(y|x) r(x, y)

Theorem 6.1:  J(π*) − J(π̃_ρ*) ≤ r_max E_x TV(π*(·|x), π_F(·|x)) + r_max E_{x, x′∼ρ_ref} TV(π_F(·|x), π_F(·|x′))
                                   − λ E_x KL(ρ*(·|x) ‖ ρ_ref(·|x)).

TV convention (ambiguity A13): TV(p, q) = ½ Σ |p − q| (the largest difference in probability of an event), with
rewards in [0, r_max]. Then |E_p r − E_q r| ≤ r_max·TV(p, q) — the step the proof needs (shift r by r_max/2 and
use Hölder). With the ½-less convention, or rewards in [−r_max, r_max], the constant would change by 2.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass

import numpy as np

from alignpro.run.directory import save_figure, write_atomic
from alignpro.run.errors import ArgumentParser, BadInput, run_cli


@dataclass(frozen=True)
class World:
    """Tables of a finite Align-Pro problem. Rows are distributions; prompts x are the first n_x elements of S."""

    p_x: np.ndarray      # (n_x,)
    rho_ref: np.ndarray  # (n_x, n_s)   ρ_ref(x′|x)
    pi_f: np.ndarray     # (n_s, n_y)   π_F(y|s)
    r: np.ndarray        # (n_x, n_y)   r(x, y) ∈ [0, r_max]
    r_max: float

    def __post_init__(self) -> None:
        n_x, n_s = self.rho_ref.shape
        if self.p_x.shape != (n_x,) or self.pi_f.shape[0] != n_s or self.r.shape != (n_x, self.pi_f.shape[1]):
            raise ValueError("inconsistent table shapes")
        if n_s < n_x:
            raise ValueError("the prompt space S must contain the prompts X (n_s ≥ n_x)")
        for name, t in (("p_x", self.p_x), ("rho_ref", self.rho_ref), ("pi_f", self.pi_f)):
            if (t < 0).any() or not np.allclose(t.sum(-1), 1):
                raise ValueError(f"{name} rows must be probability distributions")
        if (self.r < 0).any() or (self.r > self.r_max).any():
            raise ValueError("rewards must lie in [0, r_max]")

    @property
    def n_x(self) -> int:
        return self.rho_ref.shape[0]


def tv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation ½ Σ|p − q| along the last axis."""
    return 0.5 * np.abs(p - q).sum(-1)


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) along the last axis (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(-1)


def expected_reward(w: World) -> np.ndarray:
    """R(x, x′) = E_{y∼π_F(·|x′)} r(x, y), shape (n_x, n_s)."""
    return w.r @ w.pi_f.T


def optimal_prompter(w: World, lam: float) -> np.ndarray:
    """Lemma 5.1: ρ*(x′|x) ∝ ρ_ref(x′|x) exp(R(x, x′)/λ) (computed in log space for small λ)."""
    if lam <= 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    with np.errstate(divide="ignore"):
        logits = np.log(w.rho_ref) + expected_reward(w) / lam
    logits -= logits.max(-1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(-1, keepdims=True)


def rlhf_optimum(w: World, beta: float) -> np.ndarray:
    """Eq. 4: π*(y|x) ∝ π_F(y|x) exp(r(x, y)/β), the frozen model RL-fine-tuned on x (the oracle)."""
    with np.errstate(divide="ignore"):
        logits = np.log(w.pi_f[: w.n_x]) + w.r / beta
    logits -= logits.max(-1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(-1, keepdims=True)


def induced_policy(w: World, rho: np.ndarray) -> np.ndarray:
    """Eq. 3: π̃_ρ(y|x) = Σ_x′ ρ(x′|x) π_F(y|x′)."""
    return rho @ w.pi_f


def value(w: World, pi: np.ndarray) -> float:
    """J(π) = E_x E_{y∼π(·|x)} r(x, y)."""
    return float(w.p_x @ (pi * w.r).sum(-1))


def objective(w: World, rho: np.ndarray, lam: float) -> float:
    """Eq. 9: E_x [ E_{x′∼ρ} R(x, x′) − λ KL(ρ(·|x) ‖ ρ_ref(·|x)) ]."""
    return float(w.p_x @ ((rho * expected_reward(w)).sum(-1) - lam * kl(rho, w.rho_ref)))


def theorem_6_1(w: World, lam: float, beta: float | None = None) -> dict:
    """Both sides of Theorem 6.1 for ρ* (Lemma 5.1) and π* (eq. 4, with β = λ unless given)."""
    beta = lam if beta is None else beta
    rho_star, pi_star = optimal_prompter(w, lam), rlhf_optimum(w, beta)
    pi_f_x = w.pi_f[: w.n_x]
    term1 = w.r_max * float(w.p_x @ tv(pi_star, pi_f_x))
    # E_{x′∼ρ_ref(·|x)} TV(π_F(·|x), π_F(·|x′)) for every x, then averaged over P.
    pairwise = tv(pi_f_x[:, None, :], w.pi_f[None, :, :])  # (n_x, n_s)
    term2 = w.r_max * float(w.p_x @ (w.rho_ref * pairwise).sum(-1))
    term3 = lam * float(w.p_x @ kl(rho_star, w.rho_ref))
    gap = value(w, pi_star) - value(w, induced_policy(w, rho_star))
    bound = term1 + term2 - term3
    return {"gap": gap, "bound": bound, "slack": bound - gap, "term1_oracle_tv": term1,
            "term2_rewrite_tv": term2, "term3_kl": term3, "J_oracle": value(w, pi_star),
            "J_alignpro": value(w, induced_policy(w, rho_star)), "J_frozen": value(w, pi_f_x)}


def random_world(rng: np.random.Generator, n_x: int = 3, n_s: int = 5, n_y: int = 4, r_max: float = 1.0,
                 concentration: float = 1.0) -> World:
    """A random world: Dirichlet tables (small ``concentration`` = peaked), uniform rewards in [0, r_max]."""
    def dirichlet(rows: int, cols: int) -> np.ndarray:
        t = rng.dirichlet(np.full(cols, concentration), size=rows)
        t = np.clip(t, 1e-12, None)  # strictly positive so KL(ρ* ‖ ρ_ref) is finite
        return t / t.sum(-1, keepdims=True)

    return World(p_x=dirichlet(1, n_x)[0], rho_ref=dirichlet(n_x, n_s), pi_f=dirichlet(n_s, n_y),
                 r=rng.uniform(0, r_max, size=(n_x, n_y)), r_max=r_max)


# ---- the same world through the real training path ---------------------------------------------------------------
# The prompter is a tiny causal LM whose rewrite x′ is one token; the frozen model and the reward are the world's
# tables behind the Responder/Reward interfaces; training is alignpro.methods.rl (TRL RLOO, beta = λ) driven by
# alignpro.methods.alignpro.AlignProReward: the objects `method=alignpro` uses, with only the models swapped.
EMPTY = ""  # what a special token (pad/eos) decodes to: the "empty rewrite"


class TableFrozen:
    """π_F as a table: answers the string s with y ∼ π_F(·|s) (seeded)."""

    def __init__(self, states: list[str], responses: list[str], pi_f: np.ndarray, seed: int = 0):
        self.index = {s: i for i, s in enumerate(states)}
        self.responses, self.pi_f = responses, pi_f
        self.rng = np.random.default_rng(seed)

    def answer(self, prompts: list[str], sampling=None, desc=None) -> list[str]:
        return [self.responses[self.rng.choice(len(self.responses), p=self.pi_f[self.index[p.strip()]])]
                for p in prompts]


class TableReward:
    """r(x, y) as a table."""

    def __init__(self, prompts: list[str], responses: list[str], r: np.ndarray):
        self.x_index = {x: i for i, x in enumerate(prompts)}
        self.y_index = {y: i for i, y in enumerate(responses)}
        self.r = r

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        return [float(self.r[self.x_index[x], self.y_index[y]]) for x, y in zip(prompts, responses, strict=True)]


def token_world(n_x: int = 3, n_rewrites: int = 6, n_y: int = 4, seed: int = 0, hidden: int = 32,
                r_max: float = 2.0):
    """A tiny LM prompter over the vocabulary {pad, eos, p0.., a0..} saved to a folder, and a World whose prompt
    space S is what its one-token rewrites decode to: [p0.., a0.., EMPTY]. ρ_ref is the LM's exact next-token
    distribution (grouped by decoded string). Returns (model_dir, world, states, token_state)."""
    import tempfile

    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    prompts, rewrites = [f"p{i}" for i in range(n_x)], [f"a{j}" for j in range(n_rewrites)]
    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", *prompts, *rewrites])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                      initializer_range=0.5, pad_token_id=0, eos_token_id=1, bos_token_id=None,
                      tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 1
    model_dir = tempfile.mkdtemp(prefix="alignpro-theory-")
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)

    states = [*prompts, *rewrites, EMPTY]
    token_state = np.array([states.index(tok.decode([i], skip_special_tokens=True)) for i in range(len(vocab))])
    rng = np.random.default_rng(seed + 1)
    pi_f = rng.dirichlet(np.full(n_y, 0.5), size=len(states))
    world = World(p_x=np.full(n_x, 1 / n_x), rho_ref=prompter_state_probs(model, tok, prompts, token_state,
                                                                            len(states)),
                  pi_f=pi_f, r=rng.uniform(0, r_max, size=(n_x, n_y)), r_max=r_max)
    return model_dir, world, states, token_state


def prompter_state_probs(model, tok, prompts: list[str], token_state: np.ndarray, n_states: int) -> np.ndarray:
    """ρ(s|x): the LM's exact next-token distribution after each prompt's chat text, summed per decoded string."""
    import torch

    rows = []
    with torch.no_grad():
        for x in prompts:
            text = tok.apply_chat_template([[{"role": "user", "content": x}]], tokenize=False,
                                           add_generation_prompt=True)[0]
            ids = tok(text, return_tensors="pt")["input_ids"]
            p_tok = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1).numpy()
            rows.append(np.bincount(token_state, weights=p_tok, minlength=n_states))
    return np.array(rows)


def train_through_trl(lam: float, steps: int = 1600, k: int = 64, lr: float = 3e-3, seed: int = 0,
                      world_seed: int = 0, r_max: float = 2.0, max_grad_norm: float | None = None) -> dict:
    """Train the token-world prompter with alignpro's RLOO path; compare with Lemma 5.1's ρ* (per-prompt TV)."""
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignpro.config.schema import TrainerConfig
    from alignpro.methods.alignpro import AlignProReward
    from alignpro.methods.rl import build_trainer, trainer_args
    from alignpro.models.generation import Sampling

    model_dir, w, states, token_state = token_world(seed=world_seed, r_max=r_max)
    prompts, responses = states[: w.n_x], [f"y{i}" for i in range(w.r.shape[1])]
    reward_fn = AlignProReward(TableFrozen(states, responses, w.pi_f, seed), TableReward(prompts, responses, w.r))
    tcfg = TrainerConfig(name="rloo", num_generations=k, prompts_per_step=w.n_x, max_steps=steps, learning_rate=lr,
                         lr_scheduler_type="linear", bf16=False,
                         # Clipping rescales large-norm gradients only, which biases the expected update away from
                         # ∇ of eq. 9; the optimiser's choice, not the objective's, so off here.
                         extra={"max_grad_norm": max_grad_norm or 1e9})
    out_dir = tempfile.mkdtemp(prefix="alignpro-theory-out-")
    args = trainer_args(tcfg, beta=lam, seed=seed, output_dir=out_dir, sampling=Sampling(1, 1.0, 1.0, 0), device="cpu")
    rows = [{"prompt": [{"role": "user", "content": x}], "x": x} for x in prompts] * 64
    trainer = build_trainer(tcfg, model_path=model_dir, model_dtype="float32", train_rows=rows, reward_fn=reward_fn,
                            args=args, callbacks=[])
    trainer.train()
    model = trainer.model.eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    rho = prompter_state_probs(model, tok, prompts, token_state, len(states))
    rho_ref = prompter_state_probs(AutoModelForCausalLM.from_pretrained(model_dir), tok, prompts, token_state,
                                   len(states))
    rho_star = optimal_prompter(w, lam)
    for d in (model_dir, out_dir):
        shutil.rmtree(d, ignore_errors=True)
    return {"lam": lam, "tv_per_prompt": tv(rho, rho_star).tolist(), "tv_ref_to_star": tv(rho_ref, rho_star).tolist(),
            "objective_trained": objective(w, rho, lam), "objective_star": objective(w, rho_star, lam),
            "reward_trained": float(w.p_x @ (rho * expected_reward(w)).sum(-1)),
            "kl_trained": float(w.p_x @ kl(rho, w.rho_ref)),
            "reward_star": float(w.p_x @ (rho_star * expected_reward(w)).sum(-1)),
            "kl_star": float(w.p_x @ kl(rho_star, w.rho_ref))}


# ---- command line -------------------------------------------------------------------------------------------------
def property_check(n_worlds: int = 1000, seed: int = 2026) -> dict:
    """Theorem 6.1 on random worlds (sizes, peakedness, r_max, λ and β all drawn): violations and slack, and how
    often the oracle π* fails to improve on π_F (it never should)."""
    rng = np.random.default_rng(seed)
    slack, oracle_below_frozen = [], 0
    for _ in range(n_worlds):
        w = random_world(rng, n_x=int(rng.integers(1, 5)), n_s=int(rng.integers(5, 9)), n_y=int(rng.integers(2, 7)),
                         r_max=float(rng.uniform(0.5, 5)), concentration=float(rng.choice([0.1, 0.5, 1.0, 5.0])))
        res = theorem_6_1(w, lam=float(10 ** rng.uniform(-2, 1)), beta=float(10 ** rng.uniform(-2, 1)))
        slack.append(res["slack"])
        oracle_below_frozen += res["J_oracle"] < res["J_frozen"] - 1e-12
    s = np.array(slack)
    return {"n_worlds": n_worlds, "bound_violations": int((s < -1e-9).sum()),
            "oracle_below_frozen": int(oracle_below_frozen), "slack_min": float(s.min()),
            "slack_p05": float(np.percentile(s, 5)), "slack_median": float(np.median(s)),
            "slack_p95": float(np.percentile(s, 95))}


def frontier_plot(trained: list[dict], out: str, r_max: float = 2.0, world_seed: int = 0) -> str:
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
    ax.scatter([], [], marker="x", color="C3", label="trained with TRL RLOO, beta = λ")
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

    ap = ArgumentParser(prog="python -m alignpro.tools.theory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    ap.add_argument("--lams", type=float, nargs="+", default=[0.1, 0.5, 2.0], help="λ values trained through TRL")
    ap.add_argument("--steps", type=int, default=1600, help="RLOO steps per λ")
    ap.add_argument("--k", type=int, default=64, help="rewrites per prompt per step")
    ap.add_argument("--worlds", type=int, default=1000, help="random worlds for the Theorem 6.1 check")
    ap.add_argument("--out", default="outputs/theory", help="folder for the plot and the full results")
    args = ap.parse_args(argv)
    checks = [("--lams", lam, math.isfinite(lam) and lam > 0, "> 0 (a finite KL weight)") for lam in args.lams]
    checks += [("--steps", args.steps, args.steps >= 1, "≥ 1"),
               ("--k", args.k, args.k >= 2, "≥ 2 (RLOO's leave-one-out baseline needs two rewrites)"),
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
        res = train_through_trl(lam, steps=args.steps, k=args.k)
        trained.append(res)
        print(f"λ={lam:g}: TV(trained, ρ*) per prompt {[round(t, 4) for t in res['tv_per_prompt']]} "
              f"(ρ_ref was {[round(t, 3) for t in res['tv_ref_to_star']]}); KL {res['kl_trained']:.4f} vs "
              f"{res['kl_star']:.4f}", flush=True)
    plot = frontier_plot(trained, str(out / "reward_vs_kl.png"))
    summary = {"max_tv_to_closed_form": max(max(t["tv_per_prompt"]) for t in trained),
               "tv_per_lambda": {str(t["lam"]): max(t["tv_per_prompt"]) for t in trained},
               **prop, "plot": plot}
    write_atomic(out / "theory.json", json.dumps({"summary": summary, "trained": trained}, indent=2))
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main)
