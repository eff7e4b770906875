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

from dataclasses import dataclass

import numpy as np


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
