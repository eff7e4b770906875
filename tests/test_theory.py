import shutil

import numpy as np
import pytest

from alignpro.tools import theory_trl
from alignpro.tools import theory_world as T


@pytest.fixture
def world():
    return T.random_world(np.random.default_rng(0), n_x=3, n_s=6, n_y=4)


def test_lemma_5_1_closed_form_maximises_eq_9(world):
    rng = np.random.default_rng(1)
    for lam in (0.05, 0.5, 3.0):
        star = T.optimal_prompter(world, lam)
        best = T.objective(world, star, lam)
        others = rng.dirichlet(np.ones(6), size=(300, 3))
        assert all(T.objective(world, rho, lam) <= best + 1e-12 for rho in others)
        # and small perturbations of ρ* only lose
        bumped = np.clip(star + 1e-3 * rng.standard_normal(star.shape), 1e-12, None)
        assert T.objective(world, bumped / bumped.sum(-1, keepdims=True), lam) <= best + 1e-12


def test_lambda_limits(world):
    assert np.allclose(T.optimal_prompter(world, 1e6), world.rho_ref, atol=1e-5)  # λ → ∞: no optimisation
    greedy = T.optimal_prompter(world, 1e-4)  # λ → 0: all mass on argmax_x′ R(x, x′)
    assert np.allclose(greedy.argmax(-1), T.expected_reward(world).argmax(-1)) and (greedy.max(-1) > 0.99).all()


def test_tv_and_kl_conventions():
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    assert T.tv(p, q) == 0.5 and T.tv(p, p) == 0
    assert T.kl(p, q) == pytest.approx(np.log(2)) and T.kl(q, q) == 0


def test_induced_policy_and_value_by_hand():
    w = T.World(p_x=np.array([1.0]), rho_ref=np.array([[0.25, 0.75]]), pi_f=np.array([[1.0, 0.0], [0.0, 1.0]]),
                r=np.array([[0.0, 1.0]]), r_max=1.0)
    assert np.allclose(T.induced_policy(w, w.rho_ref), [[0.25, 0.75]])
    assert T.value(w, T.induced_policy(w, w.rho_ref)) == 0.75


def test_theorem_6_1_holds_on_1000_random_worlds():
    res = T.property_check(1000, seed=2026)
    assert res["n_worlds"] == 1000
    assert res["oracle_below_frozen"] == 0  # π* improves on π_F in every world
    assert res["bound_violations"] == 0 and res["slack_min"] >= -1e-9


def test_world_validation():
    with pytest.raises(ValueError, match="distributions"):
        T.World(p_x=np.array([1.0]), rho_ref=np.array([[0.5, 0.6]]), pi_f=np.eye(2), r=np.zeros((1, 2)), r_max=1.0)
    with pytest.raises(ValueError, match=r"\[0, r_max\]"):
        T.World(p_x=np.array([1.0]), rho_ref=np.array([[0.5, 0.5]]), pi_f=np.eye(2), r=np.full((1, 2), 2.0),
                r_max=1.0)
    with pytest.raises(ValueError, match="lam"):
        T.optimal_prompter(T.random_world(np.random.default_rng(0)), 0.0)


def test_table_frozen_draws_what_generator_choice_draws_one_prompt_at_a_time():
    """π_F as a table answers a step's rewrites in one call, with the very draws of ``Generator.choice(p=π_F(·|s))``
    made one rewrite at a time from the same seed (the theory runs' frozen model, 192 rewrites a step)."""
    states, responses = [f"s{i}" for i in range(7)], [f"y{i}" for i in range(5)]
    pi_f = np.random.default_rng(5).dirichlet(np.full(5, 0.5), size=7)
    frozen, rng = theory_trl.TableFrozen(states, responses, pi_f, seed=3), np.random.default_rng(3)
    for step in range(50):
        asked = [states[(step + j * j) % 7] for j in range(192)]
        expected = [responses[rng.choice(5, p=pi_f[states.index(s)])] for s in asked]
        assert frozen.answer(asked) == expected
    assert len(set(expected)) == 5


def test_tolerance_would_catch_a_factor_two_error_in_the_kl_coefficient():
    """The training-path test is a real test: had TRL's coefficient been 2λ or λ/2 (a per-token/per-sequence or
    a ½ slip), its optimum ρ*(cλ) would fail that test's TV bound or its KL match (within 10 %)."""
    model_dir, w, _, _ = theory_trl.token_world(r_max=2.0)
    shutil.rmtree(model_dir)
    for lam in (0.1, 0.5, 2.0):
        star = T.optimal_prompter(w, lam)
        kl_star = float(w.p_x @ T.kl(star, w.rho_ref))
        for c in (0.5, 2.0):
            wrong = T.optimal_prompter(w, c * lam)
            kl_wrong = float(w.p_x @ T.kl(wrong, w.rho_ref))
            assert T.tv(star, wrong).max() > 0.02 or abs(kl_wrong / kl_star - 1) > 0.1
            assert abs(kl_wrong / kl_star - 1) > 0.3  # the KL check alone already separates them


def test_swapped_kl_optimum_maximises_its_objective(world):
    """ρ_G (GRPO without its KL correction) is the maximiser of c·E_ρ R − λ KL(ρ_ref‖ρ), as ρ* is of eq. 9."""
    rng = np.random.default_rng(3)

    def swapped(rho, lam, c):
        return float(world.p_x @ (c * (rho * T.expected_reward(world)).sum(-1) - lam * T.kl(world.rho_ref, rho)))

    for lam, c in ((0.05, 1.0), (0.5, 63 / 64), (3.0, 0.5)):
        g = T.swapped_kl_optimum(world, lam, c)
        assert np.allclose(g.sum(-1), 1) and (g > 0).all()
        best = swapped(g, lam, c)
        assert all(swapped(rho, lam, c) <= best + 1e-12 for rho in rng.dirichlet(np.ones(6), size=(300, 3)))
        bumped = np.clip(g + 1e-3 * rng.standard_normal(g.shape), 1e-12, None)
        assert swapped(bumped / bumped.sum(-1, keepdims=True), lam, c) <= best + 1e-12
    assert np.allclose(T.swapped_kl_optimum(world, 1e6), world.rho_ref, atol=1e-5)


@pytest.mark.parametrize("correction", [True, False])
def test_grpo_loss_has_zero_expected_gradient_at_its_predicted_fixed_point(correction):
    """TRL GRPO's per-sample loss as alignpro configures it (dr_grpo, scale_rewards="none", one update per batch;
    grpo_trainer.compute_loss): −(r_i − r̄)·w_i + λ·k3_i·w_i with w_i = exp(log ρ − log ρ.detach()) (the KL term
    without w_i when use_bias_correction_kl=False), averaged over a group of k rewrites of one prompt. Its gradient
    in the logits, in exact expectation over every group (k = 3: all 10³ groups, weighted by their probability),
    vanishes at theory_world.grpo_fixed_point: ρ*(λ·k/(k − 1)) with the correction, ρ_G without, and at neither
    other candidate."""
    import itertools

    import torch

    model_dir, w, _, _ = theory_trl.token_world(r_max=2.0)
    shutil.rmtree(model_dir)
    lam, k, x = 0.1, 3, 1
    big_r = torch.tensor(T.expected_reward(w)[x])  # E[r | x′]: the y-noise of r averages out of every term
    ref = torch.tensor(np.log(w.rho_ref[x]))
    groups = torch.tensor(list(itertools.product(range(len(big_r)), repeat=k)))

    def expected_grad(rho):
        z = torch.tensor(np.log(rho), requires_grad=True)
        logp = torch.log_softmax(z, -1)[groups]  # (groups, k)
        weight = logp.detach().sum(-1).exp()  # probability of the group
        ratio = torch.exp(logp - logp.detach())
        r = big_r[groups]
        k3 = torch.exp(ref[groups] - logp) - (ref[groups] - logp) - 1
        loss = -(r - r.mean(-1, keepdim=True)) * ratio + lam * k3 * (ratio if correction else 1)
        (weight * loss.mean(-1)).sum().backward()
        return z.grad.abs().max().item()

    fixed = T.grpo_fixed_point(w, lam, k, bias_correction=correction)[x]
    other = T.grpo_fixed_point(w, lam, k, bias_correction=not correction)[x]
    assert expected_grad(fixed) < 1e-9
    assert expected_grad(other) > 1e-3 and expected_grad(T.optimal_prompter(w, lam)[x]) > 1e-3


def test_grpo_fixed_points_are_told_apart_by_the_integration_tolerances():
    """The GRPO integration runs (λ = 0.1, k = 64) can tell the two GRPO fixed points apart: ρ*(λ·k/(k−1)) is within
    0.006 TV of ρ*(λ), so the 0.02 TV bound accepts both, while ρ_G is ≥ 0.06 from either (and its KL 25 % lower)."""
    model_dir, w, _, _ = theory_trl.token_world(r_max=2.0)
    shutil.rmtree(model_dir)
    lam, k = 0.1, 64
    star, corrected = T.optimal_prompter(w, lam), T.grpo_fixed_point(w, lam, k)
    swapped = T.grpo_fixed_point(w, lam, k, bias_correction=False)
    assert T.tv(star, corrected).max() < 0.006
    assert T.tv(star, swapped).min() > 0.06 and T.tv(corrected, swapped).min() > 0.06
    kl_star, kl_swapped = (float(w.p_x @ T.kl(p, w.rho_ref)) for p in (star, swapped))
    assert kl_swapped < 0.75 * kl_star


# The training runs, each once per module and two at a time (theory_trl.train_many: spawned processes, one thread
# each; `make test`'s --dist loadfile keeps this file on one xdist worker). A test asks for its run by name; the
# fixture trains only the runs that the selected tests ask for. At λ = 0.1 ρ* is far from ρ_ref (KL 0.86) and the
# objective is flat around it: 1600 steps at lr 3e-3 (about 2 minutes of one core) reach TV ≤ 0.02; 1200 at 4e-3 or
# 400 at 1e-2 do not (0.07 and 0.11 on the second prompt). At λ = 0.5 and 2 ρ* is near ρ_ref (KL 0.06 and 0.004):
# 512 steps at lr 1e-2 reach it (TV 0.014 and 0.006, about 40 s), and their eq. 9 check reads their last half
# (tail=0.5) rather than quarter, for as many steps as its noise needs. The five runs take about 3.5 minutes on two
# idle cores. The timeout covers the fixture's training, which lands on the first test that asks for it.
RUNS = {
    "rloo-0.1": dict(lam=0.1),
    "rloo-0.5": dict(lam=0.5, steps=512, lr=1e-2, tail=0.5),
    "rloo-2": dict(lam=2.0, steps=512, lr=1e-2, tail=0.5),
    "grpo-0.1": dict(lam=0.1, trainer="grpo"),
    # GRPO with TRL's KL correction off: a control for the test below; 512 steps at lr 1e-2 reach its ρ_G (it
    # converges faster than the corrected estimator, whose k3·∇log ρ term is heavy-tailed)
    "grpo-uncorrected-0.1": dict(lam=0.1, trainer="grpo", steps=512, lr=1e-2,
                                 extra={"use_bias_correction_kl": False}),
}
TRAINING_TIMEOUT = 1800  # s: five runs, 2 at a time, on two loaded cores


@pytest.fixture(scope="module")
def trained(request):
    wanted = []
    for item in request.session.items:
        name = getattr(getattr(item, "callspec", None), "params", {}).get("run")
        if item.module is request.module and name in RUNS and name not in wanted:
            wanted.append(name)
    # longest first, so the short run fills the gap at the end
    wanted.sort(key=lambda name: -RUNS[name].get("steps", 1600))
    results = dict(zip(wanted, theory_trl.train_many([RUNS[name] for name in wanted], workers=2), strict=True))
    for name, res in results.items():  # shown with -rA or -s
        print(name, {key: res[key] for key in ("tv_per_prompt", "tv_to_fixed_point", "tv_to_swapped", "kl_trained",
                                               "kl_star", "kl_fixed_point", "objective_trained", "objective_star",
                                               "cpu_seconds", "seconds")}, res["logged"])
    return results


@pytest.mark.integration
@pytest.mark.timeout(TRAINING_TIMEOUT)
@pytest.mark.parametrize("run", ["rloo-0.1", "rloo-0.5", "rloo-2"])
def test_rloo_through_alignpro_reaches_lemma_5_1(trained, run):
    """The real training path (alignpro.methods.rl + AlignProEpisode, TRL RLOO, beta = lam) converges to the
    closed-form optimum of eq. 9 on a one-token-rewrite world: per-prompt TV ≤ 0.02, and the objective and the
    KL match. If this fails, fix the λ → beta mapping, not the test."""
    res = trained[run]  # k = 64 rewrites of each of the 3 prompts a step
    assert max(res["tv_per_prompt"]) <= 0.02, res
    assert min(res["tv_ref_to_star"]) > 0.02  # training had to move
    assert res["objective_trained"] == pytest.approx(res["objective_star"], abs=2e-3)
    assert res["kl_trained"] == pytest.approx(res["kl_star"], rel=0.1, abs=5e-4)


@pytest.mark.integration
@pytest.mark.timeout(TRAINING_TIMEOUT)
@pytest.mark.parametrize("run", ["grpo-0.1"])
def test_grpo_through_alignpro_reaches_lemma_5_1(trained, run):
    """``trainer=grpo`` as alignpro configures it (beta = λ, scale_rewards="none", dr_grpo, TRL's default
    use_bias_correction_kl=True) also maximises eq. 9, at λ·k/(k − 1): its k3 KL sits in the loss, not in the reward,
    but the importance ratio it is multiplied by (value 1, gradient ∇log ρ) makes its expected gradient exactly
    ∇ KL(ρ‖ρ_ref); the group-mean baseline, which holds each sample's own reward, scales the reward gradient by
    1 − 1/k (derivation: alignpro/tools/theory_world.py). At λ = 0.1, where GRPO's other possible fixed point ρ_G
    (the KL's arguments swapped, below) is 0.07–0.11 TV away, the trained prompter is within 0.02 TV of ρ*(λ) on
    every prompt (measured: 0.009, 0.007, 0.007), ≥ 0.05 from ρ_G, with ρ*'s KL (0.84 against 0.86; ρ_G: 0.62)."""
    res = trained[run]
    assert max(res["tv_per_prompt"]) <= 0.02, res  # ρ*(λ)
    assert max(res["tv_to_fixed_point"]) <= 0.02, res  # ρ*(λ·64/63)
    assert min(res["tv_to_swapped"]) >= 0.05, res  # not ρ_G
    assert res["kl_trained"] == pytest.approx(res["kl_fixed_point"], rel=0.1)
    assert res["objective_trained"] == pytest.approx(res["objective_star"], abs=2e-3)


@pytest.mark.integration
@pytest.mark.timeout(TRAINING_TIMEOUT)
@pytest.mark.parametrize("run", ["grpo-uncorrected-0.1"])
def test_grpo_without_kl_correction_stops_short_of_lemma_5_1(trained, run):
    """A control for the test above, and the known difference: with use_bias_correction_kl=False (DeepSeekMath's
    GRPO, and TRL's before the correction existed) k3 is differentiated through the sampled rewrite only, whose
    expected gradient is ∇ KL(ρ_ref‖ρ), the KL's arguments swapped. GRPO then stops at ρ_G ∝ ρ_ref/(μ_x − cR), not
    at Lemma 5.1's ρ*: closer to ρ_ref, with less KL and less reward. Measured at λ = 0.1: within 0.02 TV of ρ_G
    on every prompt (0.008, 0.007, 0.016), 0.07–0.11 from ρ*, KL 0.63 (ρ_G 0.62, ρ* 0.86), eq. 9's value 0.007
    below ρ*'s."""
    res = trained[run]
    assert max(res["tv_to_fixed_point"]) <= 0.02, res  # ρ_G
    assert min(res["tv_per_prompt"]) >= 0.05, res  # far from ρ*
    assert res["kl_trained"] == pytest.approx(res["kl_swapped"], rel=0.1)
    assert res["kl_trained"] < 0.8 * res["kl_star"] and res["reward_trained"] < res["reward_star"] - 0.02
    assert res["objective_trained"] < res["objective_star"] - 4e-3


@pytest.mark.integration
@pytest.mark.timeout(TRAINING_TIMEOUT)
@pytest.mark.parametrize("run", list(RUNS))
def test_logged_objective_is_eq_9_of_the_policy(trained, run):
    """The ``objective`` that alignpro's Objective callback logs (reward − λ·kl_seq from TRL's step logs) against
    eq. 9 computed exactly from the prompter's distribution: for each step of the run's last quarter (last half at
    λ = 0.5 and 2), the exact
    Σ_x′ ρ_t(x′|x) R(x, x′) − λ KL(ρ_t(·|x)‖ρ_ref(·|x)) of the prompter ρ_t that step sampled from, averaged over
    that step's own prompts. Each logged value is a mean over the step's k·3 rewrites of r − λ·(k1 or k3), an
    unbiased estimate of that exact value (TRL's KL estimators are unbiased on-policy), with fresh draws every step:
    the mean of (logged − exact) over the steps is zero up to noise whose standard error ``se`` is that of the
    per-step differences. The test allows 4·se (a chance failure: 6e-5), for the objective and for its two terms,
    the reward and the penalty reward − objective (the logged λ·kl_seq, against λ·KL exact). A slip in the formula,
    λ → 2λ, would shift the logged penalty and objective by λ·KL: beyond 8·se, so rejected, for the penalty at every
    λ and for the objective itself at λ ≤ 0.5 (at λ = 2 the exact penalty measured 6.5·se of the objective's
    reward noise). kl_seq → kl (per-token for per-sequence) cannot show here: every rewrite is one token
    (mean_length = 1), so the two are equal."""
    res = trained[run]
    lg = res["logged"]
    assert lg["mean_length_min"] == lg["mean_length_max"] == 1.0
    for key in ("objective", "reward", "penalty"):
        assert abs(lg[key] - lg[f"{key}_exact"]) <= 4 * lg[f"{key}_se"], (key, lg)
    assert lg["penalty_exact"] > 8 * lg["penalty_se"], lg  # a penalty logged with 2λ would fail above
    if res["lam"] <= 0.5:
        assert lg["penalty_exact"] > 8 * lg["objective_se"], lg  # and so would the objective itself


def test_theory_cli_prints_a_json_last_line(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run([sys.executable, "-m", "alignpro.tools.theory", "--json", "--lams", "0.5", "--steps", "20",
                           "--k", "4", "--worlds", "100", "--out", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["bound_violations"] == 0 and summary["n_worlds"] == 100
    assert {"max_tv_to_closed_form", "slack_min", "tv_per_lambda"} <= set(summary)
    assert (tmp_path / "reward_vs_kl.png").stat().st_size > 10_000
