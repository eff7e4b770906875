"""A local judge model and its score-line constraint (alignpro/report/judge_local.py), on the tiny model and on
SmolLM2."""

import dataclasses
import math
import re

import pytest

from alignpro.report.judge import build_judge
from alignpro.report.judge_local import SCORE_LINE_CONSTRAINT, ScoreLineProcessor, ScoreLineVocab
from alignpro.report.judge_prompt import judge_messages, outcome_pairs
from tests.conftest import compose

# ---- constrained score line (judge.constrain_scores, backend hf) -----------------------------------------------------

SCORE_LINE = re.compile(r"(10|[1-9]) (10|[1-9])")  # a constrained answer, stripped: the line and nothing else
DIGITS = {str(d) for d in range(1, 10)}


@pytest.fixture(scope="module")
def smollm2_vocab(smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    return ScoreLineVocab(tok, [tok.eos_token_id]), tok


def allowed_texts(vocab: ScoreLineVocab, prefix: str) -> set[str]:
    return {vocab.pieces[i] for i in vocab.allowed(prefix) if i in vocab.pieces}


@pytest.mark.integration
def test_score_line_vocab_allows_exactly_the_valid_continuations_on_smollm2(smollm2_vocab):
    vocab, tok = smollm2_vocab
    have = set(vocab.pieces.values())
    first = DIGITS | ({"10"} & have)  # "10" only where the vocabulary has it as one token (SmolLM2 has not)
    assert allowed_texts(vocab, "") == first
    assert not {"0", " ", "\n"} & allowed_texts(vocab, "")
    assert allowed_texts(vocab, "1") == {"0", " "} | ({" 1", " 10"} & have)
    assert allowed_texts(vocab, "10") == {" "} | ({" 1", " 10"} & have)
    assert allowed_texts(vocab, "7") == {" "} | ({f" {d}" for d in range(1, 11)} & have)
    assert allowed_texts(vocab, "7 ") == first | ({"1\n", "10\n"} & have)
    assert allowed_texts(vocab, "7 3") == {"\n"}
    assert allowed_texts(vocab, "7 1") == {"0", "\n"} | ({"0\n"} & have)
    assert allowed_texts(vocab, "7 10") == {"\n"}
    for done in ("7 3\n", "10 10\n", "1 1\n"):
        assert vocab.allowed(done) == [tok.eos_token_id]  # the line is complete: only stop
    # letters, punctuation, special tokens never qualify; every piece is pure digits / spaces / newlines
    assert all(set(p) <= set("0123456789 \n") for p in have) and tok.eos_token_id not in vocab.pieces
    assert tok.convert_tokens_to_ids("a") not in vocab.pieces
    # the memoised sets are token ids whose text keeps the line a valid prefix, never a dead end
    assert all(vocab.allowed(p) for p in ("", "1", "10", "9 ", "9 1", "9 10"))


def test_score_line_processor_masks_per_row_on_a_multi_character_vocabulary(tiny_lm):
    import torch

    _, tok = tiny_lm
    vocab = ScoreLineVocab(tok, [tok.eos_token_id])
    assert " 1" in vocab.pieces.values()  # the tiny BPE merged " 1": multi-character pieces are handled by text
    ids = {t: tok.convert_tokens_to_ids(tok.tokenize(t))[0] for t in ("7", " ", "3", "\n", " 1")}
    prompt = [[5, 6, 7], [5, 6, 7], [5, 6, 7]]
    generated = [[ids["7"], ids[" 1"]], [ids["7"], ids[" "]], [ids["7"], ids["\n"]]]  # "7\n" left the grammar
    input_ids = torch.tensor([p + g for p, g in zip(prompt, generated, strict=True)])
    scores = torch.zeros(3, len(tok) + 7)  # models often have more logits than the tokenizer has tokens
    out = ScoreLineProcessor(vocab, prompt_len=3)(input_ids, scores)
    finite = [{vocab.pieces.get(i, i) for i in torch.isfinite(row).nonzero().flatten().tolist()} for row in out]
    assert finite[0] == {"0", "\n"}  # "7 1"
    assert finite[1] == DIGITS | ({"10"} & set(vocab.pieces.values()))  # "7 "
    assert finite[2] == {tok.eos_token_id}


def test_constrained_tiny_judge_always_parses_even_with_random_weights(tmp_path):
    cfg = compose("+judge=tiny", "judge.constrain_scores=true").judge
    judge = build_judge(cfg, cache_root=tmp_path)
    assert judge.backend.constraint == SCORE_LINE_CONSTRAINT
    recs = judge.judge_pairs(["What is 2+2?", "Name a colour."], ["4", "Red."], ["5", "Blue."])
    assert judge.stats["invalid"] == judge.stats["retries"] == 0 and judge.backend.generated == 4
    for r in recs:
        for o in ("ab", "ba"):
            assert r[f"attempts_{o}"] == 1 and SCORE_LINE.fullmatch(r[f"raw_{o}"][0]), r[f"raw_{o}"]
            assert r[f"outcome_{o}"] in (-1, 0, 1)
    # a sampled constrained decode (the retries' path) stays inside the grammar too
    sampled = dataclasses.replace(judge.sampling, temperature=1.5, top_k=3)
    texts = judge.backend.complete([judge_messages(f"q{i}", "a", "b") for i in range(6)], sampled)
    assert all(SCORE_LINE.fullmatch(t) for t in texts), texts


@pytest.mark.integration
def test_constrained_smollm2_judge_gives_valid_verdicts_in_both_orders(smollm2_dir, tmp_path):
    from alignpro.report.statistics import win_tie_loss

    judge = build_judge(compose("+judge=hf").judge, cache_root=tmp_path)  # constrain_scores: true by default
    assert judge.backend.constrain_scores
    prompts = ["What is the capital of France?", "Name a fruit that is yellow.", "How many legs does a spider have?",
               "What colour is the sky on a clear day?"]
    good = ["The capital of France is Paris.", "A banana is a yellow fruit.", "A spider has eight legs.",
            "On a clear day the sky is blue."]
    bad = ["I don't know.", "A car.", "Spiders are cats.", "Purple banana keyboard."]
    recs = judge.judge_pairs(prompts, good, bad)
    assert judge.stats == {"orders": 8, "requests": 8, "cache_hits": 0, "retries": 0, "invalid": 0}
    for r in recs:
        assert SCORE_LINE.fullmatch(r["raw_ab"][0]) and SCORE_LINE.fullmatch(r["raw_ba"][0])
        # each order's verdict is what its own score line says, mapped back to (A, B): ba's line lists B first
        a_ab, b_ab = map(int, r["raw_ab"][0].split())
        b_ba, a_ba = map(int, r["raw_ba"][0].split())
        assert tuple(r["scores_ab"]) == (a_ab, b_ab) and tuple(r["scores_ba"]) == (a_ba, b_ba)
        assert r["outcome_ab"] == (a_ab > b_ab) - (a_ab < b_ab) and r["outcome_ba"] == (a_ba > b_ba) - (a_ba < b_ba)
    res = win_tie_loss([(r["outcome_ab"], r["outcome_ba"]) for r in recs])
    assert res["n_valid"] == 4 and res["n_invalid_orders"] == 0
    for k in ("win", "tie", "loss", "position_consistency", "first_position_win"):
        assert math.isfinite(res[k]) and 0 <= res[k] <= 1, (k, res)
    assert res["win"] + res["tie"] + res["loss"] == pytest.approx(1)


def test_constrained_and_free_answers_never_share_a_cache_key(tmp_path):
    args = (["What is 2+2?"], ["4"], ["5"])
    free = build_judge(compose("+judge=tiny").judge, cache_root=tmp_path)
    free.judge_pairs(*args)
    constrained = build_judge(compose("+judge=tiny", "judge.constrain_scores=true").judge, cache_root=tmp_path)
    conv, sampling = judge_messages("What is 2+2?", "4", "5"), constrained.sampling
    assert constrained.cache_key(conv, sampling, 1) != free.cache_key(conv, sampling, 1)
    assert "constraint" not in free.cache_meta(sampling, 1)  # free keys carry no grammar name
    assert constrained.cache_meta(sampling, 1)["constraint"] == SCORE_LINE_CONSTRAINT
    recs = constrained.judge_pairs(*args)
    assert constrained.stats["cache_hits"] == 0 and constrained.backend.generated == 2  # free answers not reused
    assert outcome_pairs(recs)[0] != (None, None)
    again = build_judge(compose("+judge=tiny", "judge.constrain_scores=true").judge, cache_root=tmp_path)
    assert again.judge_pairs(*args) == recs and again.backend.generated == 0


@pytest.mark.parametrize(("judge_name", "overrides", "match"), [
    ("openai_api", ["+judge.constrain_scores=true"], "judge.constrain_scores=True is invalid: needs backend: hf"),
    ("tiny", ["judge.constrain_scores=maybe"], "judge.constrain_scores='maybe' is invalid: must be true or false"),
    ("tiny", ["judge.constrain_scores=true", "judge.max_new_tokens=5"], "too small for judge.constrain_scores"),
])
def test_constrain_scores_is_refused_where_it_cannot_work(judge_name, overrides, match):
    from alignpro.config.validate import ConfigError, validate_judge

    with pytest.raises(ConfigError, match=re.escape(match)):
        validate_judge(compose(f"+judge={judge_name}", *overrides))
