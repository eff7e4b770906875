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


@pytest.mark.integration
@pytest.mark.parametrize("lam", [0.1, 0.5, 2.0])
def test_rloo_through_alignpro_reaches_lemma_5_1(lam):
    """The real training path (alignpro.methods.rl + AlignProEpisode, TRL RLOO, beta = lam) converges to the
    closed-form optimum of eq. 9 on a one-token-rewrite world: per-prompt TV ≤ 0.02, and the objective and the
    KL match. If this fails, fix the λ → beta mapping, not the test."""
    res = theory_trl.train_through_trl(lam)  # 1600 steps, k = 64: about a minute on one core
    assert max(res["tv_per_prompt"]) <= 0.02, res
    assert min(res["tv_ref_to_star"]) > 0.02  # training had to move
    assert res["objective_trained"] == pytest.approx(res["objective_star"], abs=2e-3)
    assert res["kl_trained"] == pytest.approx(res["kl_star"], rel=0.1, abs=5e-4)


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
