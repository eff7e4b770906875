"""An exact discrete world for Align-Pro: Lemma 5.1 and Theorem 6.1 computed in closed form.

Finite prompts x ∈ X, a finite prompt space S that the frozen model reads (rewrites x′ ∈ S; X ⊆ S, so the frozen
model can also answer x itself), finite responses y ∈ Y, and tables:

    P(x)            prompt distribution                     ρ_ref(x′|x)   reference prompter
    π_F(y|s)        frozen model, s ∈ S                     r(x, y) ∈ [0, r_max]   reward

Everything of the paper is then a finite sum:

    R(x, x′)  = Σ_y π_F(y|x′) r(x, y)                                        (Lemma 5.1's R)
    ρ*(x′|x) ∝ ρ_ref(x′|x) exp(R(x, x′)/λ)                                    (Lemma 5.1, maximiser of eq. 9)
    ρ_G(x′|x) = λ ρ_ref(x′|x) / (μ_x − c R(x, x′))         (max c·E R − λ KL(ρ_ref‖ρ); GRPO without its correction)
    π*(y|x)  ∝ π_F(y|x) exp(r(x, y)/β)                                       (eq. 4, the RLHF oracle)
    π̃_ρ(y|x) = Σ_x′ ρ(x′|x) π_F(y|x′)                                        (eq. 3, prompter + frozen model)
    J(π)      = Σ_x P(x) Σ_y π(y|x) r(x, y)

Theorem 6.1:  J(π*) − J(π̃_ρ*) ≤ r_max E_x TV(π*(·|x), π_F(·|x)) + r_max E_{x, x′∼ρ_ref} TV(π_F(·|x), π_F(·|x′))
                                   − λ E_x KL(ρ*(·|x) ‖ ρ_ref(·|x)).

TV convention (ambiguity A13): TV(p, q) = ½ Σ |p − q| (the largest difference in probability of an event), with
rewards in [0, r_max]. Then |E_p r − E_q r| ≤ r_max·TV(p, q) — the step the proof needs (shift r by r_max/2 and
use Hölder). With the ½-less convention, or rewards in [−r_max, r_max], the constant would change by 2.

Where TRL GRPO stops (:func:`grpo_fixed_point`). alignpro's ``trainer=grpo`` (conf/trainer/grpo.yaml,
alignpro.methods.rl.options) is TRL GRPO with beta = λ, ``scale_rewards="none"``, ``loss_type="dr_grpo"``, one
update per generated batch, and TRL's default ``use_bias_correction_kl=True``. For a one-token rewrite a ∼ ρ(·|x)
in a group of k its per-sample loss is −(r_a − r̄)·w_a + λ·k3(a)·w_a, with w_a = ρ(a)/ρ_old(a) (value 1, gradient
∇log ρ(a)), k3(a) = ρ_ref(a)/ρ(a) − log(ρ_ref(a)/ρ(a)) − 1 and r̄ the group mean, the sample itself included.
Its expected gradient:

* reward: E[(r_a − r̄) ∇log ρ(a)] = (1 − 1/k)·∇ E_ρ R (r̄ holds r_a with weight 1/k; the others are independent);
* KL with the correction: E_a∼ρ[∇k3(a) + k3(a) ∇log ρ(a)] = Σ_a ρ(a) log(ρ(a)/ρ_ref(a)) ∇log ρ(a) = ∇ KL(ρ‖ρ_ref);
* KL without it (``use_bias_correction_kl=False``, the k3-in-the-loss of DeepSeekMath's GRPO): k3 is an unbiased
  *value* of KL(ρ‖ρ_ref), but it is then differentiated through the sampled a only:
  E_a∼ρ[∇k3(a)] = Σ_a (ρ(a) − ρ_ref(a)) ∇log ρ(a) = ∇[−Σ_a ρ_ref(a) log ρ(a)] = ∇ KL(ρ_ref‖ρ), the arguments swapped.

So alignpro's GRPO ascends (1 − 1/k)·E_ρ R − λ KL(ρ‖ρ_ref), which is eq. 9 with λ·k/(k − 1): its fixed point is
Lemma 5.1's ρ* at that λ (k = 64: 1.6 % above λ; in the token world at most 0.006 TV from ρ*(λ)). Without the
correction it ascends (1 − 1/k)·E_ρ R − λ KL(ρ_ref‖ρ), whose maximiser is the ρ_G above (:func:`swapped_kl_optimum`;
Lagrange: c R(a) + λ ρ_ref(a)/ρ(a) = μ_x, μ_x > c max R fixed by Σ_a ρ_G = 1). ρ_G tilts ρ_ref by a pole
1/(μ_x − cR) instead of exp(R/λ): to first order in 1/λ the two agree, but as λ → 0 ρ_G keeps O(λ) mass on every
rewrite where ρ* keeps exp(−ΔR/λ), so it stays closer to ρ_ref (lower KL, lower reward; token world, λ = 0.1: TV
0.07–0.11 from ρ*, KL 0.62 against 0.86). tests/test_theory.py trains both through TRL and finds each fixed point.
(With ``scale_rewards="group"``, TRL's default, the reward gradient would also be divided by the group's reward
std, which depends on ρ: yet another fixed point. Rewrites of several tokens: k3 is per token, and the correction
weighs each token by its own ratio, so the gradient is not that of the sequence KL; not modelled here.)
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


def swapped_kl_optimum(w: World, lam: float, c: float = 1.0) -> np.ndarray:
    """The maximiser of c·E_ρ R − λ KL(ρ_ref‖ρ) (the KL's arguments swapped): ρ_G(x′|x) = λ ρ_ref / (μ_x − c R),
    μ_x found by bisection in (c·max R, c·max R + λ] (the sum is > 1 at the left end and ≤ 1 at the right)."""
    if lam <= 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    cr = c * expected_reward(w)
    top = np.where(w.rho_ref > 0, cr, -np.inf).max(-1, keepdims=True)  # the pole: max over the support of ρ_ref
    lo, hi = top.copy(), top + lam
    for _ in range(200):  # float64 bisection: the bracket shrinks below machine precision long before 200 halvings
        mid = 0.5 * (lo + hi)
        with np.errstate(divide="ignore"):
            total = (lam * w.rho_ref / np.maximum(mid - cr, 1e-300)).sum(-1, keepdims=True)
        lo, hi = np.where(total > 1, mid, lo), np.where(total > 1, hi, mid)
    p = np.where(w.rho_ref > 0, lam * w.rho_ref / (hi - cr), 0.0)
    return p / p.sum(-1, keepdims=True)


def grpo_fixed_point(w: World, lam: float, k: int, bias_correction: bool = True) -> np.ndarray:
    """Where TRL GRPO with beta = λ, k rewrites per prompt, dr_grpo and ``scale_rewards="none"`` stops (module
    docstring): ρ*(λ·k/(k − 1)) with ``use_bias_correction_kl`` (TRL's default), else ρ_G with c = 1 − 1/k."""
    c = 1.0 - 1.0 / k
    return optimal_prompter(w, lam / c) if bias_correction else swapped_kl_optimum(w, lam, c)


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
