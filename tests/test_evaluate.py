import pytest

from alignpro.methods.base import Arm
from alignpro.models.frozen import build_frozen
from alignpro.models.prompter import load_prompter
from alignpro.report.evaluate import eval_samplings, evaluate
from tests.conftest import compose


def test_eval_samplings_default_to_the_papers_d8():
    cfg = compose()
    answer, rewrite = eval_samplings(cfg.eval, 256, 128)
    assert (answer.temperature, answer.top_p, answer.top_k, answer.max_new_tokens) == (1.5, 0.6, 20, 256)
    assert (rewrite.temperature, rewrite.top_p, rewrite.top_k, rewrite.max_new_tokens) == (1.5, 0.6, 20, 128)
    cfg = compose("+eval.rewrite_sampling={temperature: 0.7, top_p: 1.0, top_k: 0}", "eval.max_new_tokens=9")
    answer, rewrite = eval_samplings(cfg.eval, 256, 128)
    assert answer.max_new_tokens == 9 and rewrite.temperature == 0.7


def test_evaluate_pools_samples_and_scores_against_x(tiny_reward):
    cfg = compose("experiment=smoke")
    answer, rewrite = eval_samplings(cfg.eval, 4, 4)
    arm = Arm("base_prompter", load_prompter(cfg.prompter), build_frozen(cfg.frozen))
    summary, rows = evaluate(arm, ["p1", "p2", "p3"], tiny_reward, answer, rewrite, samples_per_prompt=2,
                             n_resamples=100)
    assert summary["n"] == 6 and summary["n_prompts"] == 3 and len(rows) == 6
    assert [s.x for s in rows] == ["p1", "p1", "p2", "p2", "p3", "p3"]
    assert all(s.x_prime for s in rows)  # a prompter arm: every answer is to a rewrite
    assert [s.r for s in rows] == tiny_reward.score([s.x for s in rows], [s.y for s in rows])
    assert summary["reward_mean"] == pytest.approx(sum(s.r for s in rows) / 6)


def test_answer_shift_estimates_theorem_6_1_second_term(tiny_reward):
    cfg = compose("experiment=smoke")
    answer, rewrite = eval_samplings(cfg.eval, 4, 4)
    arm = Arm("base_prompter", load_prompter(cfg.prompter), build_frozen(cfg.frozen))
    summary, rows = evaluate(arm, ["p1", "p2", "p3"], tiny_reward, answer, rewrite, n_resamples=50, shift=True)
    direct = [s.r_direct for s in rows]
    assert summary["answer_shift_reward"] == pytest.approx(sum(direct) / 3 - summary["reward_mean"])
    assert 0 <= summary["answer_shift_embedding"] <= 2
    assert all(s.y_direct is not None for s in rows)
    assert [s.r_direct for s in rows] == tiny_reward.score([s.x for s in rows], [s.y_direct for s in rows])
    no_prompter = Arm("no_finetune", None, arm.responder)
    summary, rows = evaluate(no_prompter, ["p1", "p2"], tiny_reward, answer, rewrite, n_resamples=50, shift=True)
    assert "answer_shift_reward" not in summary and "y_direct" not in rows[0].row()
    assert all(s.x_prime is None for s in rows)  # π_F answered x itself


def test_heldout_prompts_are_the_first_n_or_a_seeded_draw_independent_of_the_run_seed():
    from alignpro.report.evaluate import heldout_prompts

    heldout = [{"prompt": f"p{i}"} for i in range(50)]
    first = compose("eval.n_prompts=5").eval
    assert heldout_prompts(heldout, first) == ["p0", "p1", "p2", "p3", "p4"]
    drawn = compose("eval.n_prompts=5", "eval.prompt_sample=seeded", "seed=3").eval
    picked = heldout_prompts(heldout, drawn)
    assert len(set(picked)) == 5 and picked != ["p0", "p1", "p2", "p3", "p4"]
    assert heldout_prompts(heldout, compose("eval.n_prompts=5", "eval.prompt_sample=seeded", "seed=9").eval) == picked
    other = compose("eval.n_prompts=5", "eval.prompt_sample=seeded", "eval.sample_seed=1").eval
    assert heldout_prompts(heldout, other) != picked
    assert compose("experiment=paper/phi35_mini_qwen25_7b_orca").eval.prompt_sample == "seeded"
    everything = compose("eval.n_prompts=80", "eval.prompt_sample=seeded").eval
    assert sorted(heldout_prompts(heldout, everything)) == sorted(r["prompt"] for r in heldout)
