import json

import pytest
from omegaconf import OmegaConf

from alignpro.data import DataError, adapt_helpsteer, adapt_orca, adapt_ultrafeedback, load_splits, seeded_split
from tests.conftest import compose


def test_embedded_set_is_large_diverse_and_split_deterministically(embedded_splits):
    s = embedded_splits
    assert s.info["n_train"] + s.info["n_heldout"] >= 300
    prompts = [r["prompt"] for r in s.train + s.heldout]
    assert len(set(prompts)) == len(prompts)
    assert not {r["prompt"] for r in s.train} & {r["prompt"] for r in s.heldout}
    assert all(r["chosen"] and r["rejected"] for r in s.train + s.heldout)
    again = load_splits(compose("seed=7").dataset)  # the run seed does not move the held-out split
    assert [r["prompt"] for r in again.heldout] == [r["prompt"] for r in s.heldout]
    other = load_splits(compose("dataset.split_seed=1").dataset)
    assert [r["prompt"] for r in other.heldout] != [r["prompt"] for r in s.heldout]


def _with_path(path, **extra):
    return OmegaConf.merge(compose().dataset, {"path": str(path), **extra})


def test_empty_dataset_is_a_clear_error(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_splits(_with_path(p))


def test_missing_prompt_field_names_the_columns(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text("\n".join(json.dumps({"id": i, "question": "q", "chosen": "a", "rejected": "b"}) for i in range(5)))
    with pytest.raises(DataError, match="no prompt field 'prompt'.*question"):
        load_splits(_with_path(p))


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_splits(_with_path(tmp_path / "nope.jsonl"))


def test_split_needs_both_sides():
    with pytest.raises(DataError, match="heldout"):
        seeded_split([{"prompt": "a"}], 0.5, 0)


def test_adapters_normalise_hub_rows():
    def conv(answer):
        return [{"role": "user", "content": "p"}, {"role": "assistant", "content": answer}]

    uf = adapt_ultrafeedback([{"prompt": "p", "prompt_id": "id1", "score_chosen": 8.0, "score_rejected": 8.0,
                               "chosen": conv("good"), "rejected": conv("bad")}])
    assert uf[0] | {} == {"prompt": "p", "system": None, "chosen": "good", "rejected": "bad", "chosen_score": 8.0,
                          "rejected_score": 8.0, "source_id": "id1"}
    hs = adapt_helpsteer([{"prompt": "p", "response": "r1", "helpfulness": 1},
                          {"prompt": "p", "response": "r2", "helpfulness": 4},
                          {"prompt": "q", "response": "only", "helpfulness": 2}])
    assert len(hs) == 2  # de-duplicated prompts
    assert (hs[0]["chosen"], hs[0]["rejected"]) == ("r2", "r1")
    assert hs[1]["rejected"] is None  # a single response gives no pair
    orca = adapt_orca([{"input": "i", "system": "", "chosen": "c", "rejected": "r", "chosen_score": 9.0}])
    assert orca[0]["system"] is None and orca[0]["prompt"] == "i"
