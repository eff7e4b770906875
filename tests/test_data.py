"""The dataset layer: the embedded set, and hub-layout copies of the paper's three datasets built from their documented
schemas (docs/datasets-models.md §2.2, §3.1, §4.1, §5), loaded through ``dataset.path`` exactly as the
hub id would be."""

import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
from datasets import Dataset, Features, List, Value
from omegaconf import OmegaConf

from alignpro.data import DataError
from alignpro.data.adapters import adapt_embedded, prompt_hash
from alignpro.data.preferences import load_splits, seeded_split
from tests.conftest import ROOT, compose

MSG = {"content": Value("string"), "role": Value("string")}
UFB = Features({"prompt": Value("string"), "prompt_id": Value("string"), "chosen": List(MSG), "rejected": List(MSG),
                "messages": List(MSG), "score_chosen": Value("float64"), "score_rejected": Value("float64")})
RATINGS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
HELPSTEER = Features({"prompt": Value("string"), "response": Value("string"),
                     **{k: Value("int32") for k in RATINGS}})
ORCA = Features({"system": Value("string"), "input": Value("string"), "chosen": Value("string"),
                "rejected": Value("string"), "generations": List(Value("string")), "order": List(Value("string")),
                "labelling_model": Value("string"), "labelling_prompt": List(MSG),
                "raw_labelling_response": Value("string"), "rating": List(Value("float64")),
                "rationale": Value("string"), "status": Value("string"), "original_chosen": Value("string"),
                "original_rejected": Value("string"), "chosen_score": Value("float64"),
                "in_gsm8k_train": Value("bool")})

# Non-ASCII with leading/trailing whitespace and a tab: records must keep it byte for byte.
UNICODE = "  Übersetze «naïve café» ins Japanische — 日本語で？\n\t"
SYS = "You are a helpful assistant, who always provide explanation. Think like you are answering to a five year old."


# ---- fixture builders (hub layouts) -------------------------------------------------------------------------------
def uf_row(prompt, chosen, rejected, sc, sr, gen=False):
    def conv(answer):
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]

    return {"prompt": prompt, "prompt_id": prompt_hash(prompt), "chosen": conv(chosen), "rejected": conv(rejected),
            "messages": conv(chosen)[:1] if gen else conv(chosen), "score_chosen": sc, "score_rejected": sr}


UF_TRAIN = [  # (prompt, chosen, rejected, score_chosen, score_rejected)
    ("How can I build a daily drawing habit?", "Start with ten minutes a day.", "As an AI I cannot draw.", 8.5, 6.0),
    ("Is a tomato a fruit?", "Botanically yes.", "Yes, botanically.", 8.5, 8.5),  # a tie
    (UNICODE, "日本語: ナイーブなカフェ", "I don't know.", 9.0, 2.0),
    ("Write a haiku about rain. " * 20, "Soft rain on the roof", "Rain.", 7.0, 3.0),  # 520-char prompt
    ("Summarise the plot of Hamlet.", "A prince avenges his father. " * 30, "It is a play.", 8.0, 4.0),  # long answer
    ("   ", "Nothing to answer.", "Hm.", 5.0, 1.0),  # blank prompt
    ("How can I build a daily drawing habit?", "Carry a sketchbook.", "Draw.", 7.0, 2.0),  # repeated prompt
    ("What is the capital of Australia?", "Canberra.", "Sydney.", 10.0, 1.0),  # also in test_prefs
]
UF_TEST = [
    ("What is the capital of Australia?", "Canberra.", "Sydney.", 10.0, 1.0),
    ("Name a prime number above 10.", "11.", "12.", 9.0, 2.0),
    ("Explain recursion briefly.", "A function calling itself.", "A loop.", 6.0, 6.0),  # a tie
]

HS_TRAIN = [  # (prompt, response, helpfulness, correctness); rows of a prompt are consecutive as on the hub ...
    ("List three considerations for assistive technology.", "Safety, compatibility, ease of use.", 3, 4),
    ("List three considerations for assistive technology.", "Price.", 1, 2),
    ("List three considerations for assistive technology.", "Safety and price.", 2, 3),
    ("Describe the water cycle.", "Evaporation, condensation, precipitation.", 3, 3),  # equal helpfulness: a tie
    ("Describe the water cycle.", "Water moves around.", 3, 1),
    (UNICODE, "単一の回答", 2, 2),  # a single-response prompt
    ("Write a limerick about a cat.", "A cat with a hat ...", 3, 0),  # helpfulness and correctness disagree
    ("Write a limerick about a cat.", "There once was a cat from Peru ...", 2, 4),
    ("List three considerations for assistive technology.", "No idea.", 0, 0),  # ... except this late repeat
    ("Define entropy.", "A measure of disorder.", 3, 3),  # also in validation
]
HS_VALID = [
    ("Define entropy.", "A measure of disorder.", 3, 3),
    ("Explain photosynthesis.", "Plants turn light into sugar.", 4, 4),
    ("Explain photosynthesis.", "Plants eat soil.", 1, 0),
    ("Give a synonym for happy.", "Joyful.", 4, 4),
]


def orca_row(system, text, chosen, rejected, status, rating, gsm8k=False):
    swapped = status == "swapped"
    return {"system": system, "input": text, "chosen": chosen, "rejected": rejected,
            "generations": [rejected, chosen] if swapped else [chosen, rejected],
            "order": ["chosen", "rejected"], "labelling_model": "gpt-4-1106-preview",
            "labelling_prompt": [{"role": "system", "content": "You are a judge."}, {"role": "user", "content": text}],
            "raw_labelling_response": f"{rating[0]} {rating[1]}\nRationale.", "rating": rating,
            "rationale": "Rationale.", "status": status,
            "original_chosen": rejected if swapped else chosen, "original_rejected": chosen if swapped else rejected,
            "chosen_score": max(rating), "in_gsm8k_train": gsm8k}


ORCA_ROWS = [
    orca_row("", "Generate RDF triplets for: AFC Ajax (amateurs) play at Sportpark De Toekomst.",
             '[["AFC Ajax (amateurs)", "ground", "Sportpark De Toekomst"]]', "Sure! Here are the triplets ...", "tie",
             [9.0, 9.0]),
    orca_row(SYS, "Why is the sky blue?", "Because air scatters blue light the most.", "Because of the ocean.",
             "unchanged", [9.0, 4.0]),
    orca_row("", "Translate to French: good morning.", "Bonjour.", "Bonsoir.", "swapped", [5.0, 8.0]),
    orca_row("", "Natalia sold 48 clips in April and half as many in May. How many in total?", "72.", "96.",
             "unchanged", [10.0, 3.0], gsm8k=True),
    orca_row("", "Name a colour.", "Blue.", "Blue!", "unchanged", [7.0, 6.0]),  # chosen_score 7 < 8
    orca_row("", UNICODE, "Voilà: 日本語", "No.", "unchanged", [9.0, 2.0]),
    orca_row(SYS, "Why do cats purr?", "Purring signals contentment and can soothe.", "Cats purr.", "swapped",
             [3.0, 8.0]),
    orca_row("", "Why is the sky blue?", "Rayleigh scattering.", "Magic.", "unchanged", [8.0, 2.0]),
    orca_row("", "   ", "Empty.", "Empty!", "unchanged", [8.0, 2.0]),  # blank input
    orca_row("You are an AI assistant.", "Is 17 prime?", "Yes, 17 is prime.", "No.", "unchanged", [10.0, 1.0]),
    orca_row("", "Name a planet.", "Mars.", "Pluto.", "tie", [6.0, 6.0]),
    orca_row("", "Is 17 prime?", "Yes.", "Maybe.", "unchanged", [9.0, 5.0]),
    orca_row("", "Summarise: The quick brown fox jumps over the lazy dog.", "A fox jumps over a dog.", "Dog.",
             "unchanged", [9.0, 3.0]),
    orca_row(SYS, "What is rain?", "Water falling from clouds.", "Snow.", "unchanged", [8.0, 2.0]),
]

HELPSTEER_README = """---
license: cc-by-4.0
dataset_info:
  features:
  - name: prompt
    dtype: string
  - name: response
    dtype: string
""" + "".join(f"  - name: {k}\n    dtype: int32\n" for k in RATINGS) + "---\n# HelpSteer (test copy)\n"


def write_ultrafeedback(root):
    train = [uf_row(*r) for r in UF_TRAIN]
    test = [uf_row(*r) for r in UF_TEST]
    splits = {"train_prefs": train, "train_sft": train, "train_gen": [uf_row(*r, gen=True) for r in UF_TRAIN],
              "test_prefs": test, "test_sft": test[:2], "test_gen": [uf_row(*r, gen=True) for r in UF_TEST[:2]]}
    for split, rows in splits.items():
        Dataset.from_list(rows, features=UFB).to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))


def helpsteer_rows(rows):
    return [{"prompt": p, "response": r, "helpfulness": h, "correctness": c, "coherence": 4, "complexity": 1,
             "verbosity": 1} for p, r, h, c in rows]


def write_helpsteer(root, train=HS_TRAIN, valid=HS_VALID, features=HELPSTEER, readme=HELPSTEER_README):
    root.mkdir(parents=True, exist_ok=True)
    rows = {"train": helpsteer_rows(train), "validation": helpsteer_rows(valid)}
    if "response" not in features:
        rows = {k: [{c: r[c] for c in features} for r in v] for k, v in rows.items()}
    for split, data in rows.items():
        Dataset.from_list(data, features=features).to_json(str(root / f"{split}.jsonl.gz"))
    if readme:
        (root / "README.md").write_text(readme)


def write_orca(root):
    Dataset.from_list(ORCA_ROWS, features=ORCA).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Hub-layout copies of the three datasets, built once; the datasets cache goes to a temp dir too."""
    import datasets

    root = tmp_path_factory.mktemp("hub")
    mp = pytest.MonkeyPatch()
    mp.setattr(datasets.config, "HF_DATASETS_CACHE", root / "cache")
    bars_were_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    paths = {"ultrafeedback": root / "ultrafeedback_binarized", "helpsteer": root / "HelpSteer",
             "orca": root / "distilabel-intel-orca-dpo-pairs", "cache": root / "cache"}
    write_ultrafeedback(paths["ultrafeedback"])
    write_helpsteer(paths["helpsteer"])
    write_orca(paths["orca"])
    yield paths
    mp.undo()
    if not bars_were_off:
        datasets.enable_progress_bars()


def load(hub, name, *overrides):
    return load_splits(compose(f"dataset={name}", f"dataset.path={hub[name]}", *overrides).dataset)


def by_prompt(records):
    return {r["prompt"]: r for r in records}


def assert_accounted(splits):
    """Every raw row is either kept (one record per prompt) or counted under exactly one drop rule."""
    for side in ("train", "heldout"):
        info = splits.info[side]
        assert info["rows"] == info["records"] + sum(info["dropped"].values()), (side, info)
    assert (splits.info["n_train"], splits.info["n_heldout"]) == (len(splits.train), len(splits.heldout))


# ---- embedded (the offline default; its split must never move: published numbers depend on it) -------------------
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


def test_embedded_heldout_is_the_published_one(embedded_splits):
    # The embedded default's held-out rows and their order as published (split_seed=0, 20 % of 360 rows): the
    # first, fifth and last ids and a digest of all 72, recorded before the hub adapters were added.
    ids = [r["source_id"] for r in embedded_splits.heldout]
    assert (len(ids), ids[0], ids[4], ids[-1]) == (72, "emb-0003", "emb-0037", "emb-0357")
    assert prompt_hash(",".join(ids)) == EMBEDDED_HELDOUT_DIGEST
    assert embedded_splits.info["train"]["dropped"] == dict.fromkeys(embedded_splits.info["train"]["dropped"], 0)


EMBEDDED_HELDOUT_DIGEST = "e3373669d853751fa4826925b5cdec61987758bd6ba5f96949881ebaab126b68"


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


def test_missing_embedded_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_splits(_with_path(tmp_path / "nope.jsonl"))


def test_split_needs_both_sides():
    with pytest.raises(DataError, match="heldout"):
        seeded_split([{"prompt": "a"}], 0.5, 0)


def test_embedded_length_filter_counts_what_it_drops(embedded_splits):
    s = load_splits(compose("dataset.max_prompt_chars=40").dataset)
    assert all(len(r["prompt"]) <= 40 for r in s.train + s.heldout)
    kept = [r for r in embedded_splits.heldout if len(r["prompt"]) <= 40]
    assert s.heldout == kept  # filtering removes rows from the fixed split, never re-draws it
    assert s.info["heldout"]["dropped"]["prompt_length"] == len(embedded_splits.heldout) - len(kept) > 0
    rows = [{"id": "a", "prompt": "p", "chosen": "c", "rejected": "r"}]
    assert adapt_embedded(rows)[0] == {"prompt": "p", "system": None, "chosen": "c", "rejected": "r",
                                       "chosen_score": None, "rejected_score": None, "source_id": "a", "kind": None,
                                       "rejected_other": None}


# ---- UltraFeedback (binarized) -------------------------------------------------------------------------------------
def test_ultrafeedback_records_from_a_hub_layout_copy(hub):
    s = load(hub, "ultrafeedback")
    train = by_prompt(s.train)
    first = train["How can I build a daily drawing habit?"]
    assert first == {"prompt": "How can I build a daily drawing habit?", "system": None,
                     "chosen": "Start with ten minutes a day.", "rejected": "As an AI I cannot draw.",
                     "chosen_score": 8.5, "rejected_score": 6.0,
                     "source_id": prompt_hash("How can I build a daily drawing habit?"), "kind": None,
                     "rejected_other": None}
    assert train[UNICODE]["prompt"] == UNICODE and train[UNICODE]["chosen"] == "日本語: ナイーブなカフェ"
    assert len(train[UNICODE]["source_id"]) == 64
    # default ties=unpair: the prompt stays, the equal-score pair does not
    assert train["Is a tomato a fruit?"]["rejected"] is None and train["Is a tomato a fruit?"]["chosen_score"] == 8.5
    info = s.info["train"]
    assert (info["split"], info["rows"], info["tied"]) == ("train_prefs", 8, 1)
    assert info["dropped"] | {} == {"empty_prompt": 1, "card_filter": 0, "ties": 0, "prompt_length": 0,
                                    "response_length": 0, "duplicate": 1, "in_heldout": 1, "max_train": 0}
    assert (info["records"], info["pairs"]) == (5, 4)
    assert "What is the capital of Australia?" not in train  # never train on an evaluation prompt
    assert [r["prompt"] for r in s.heldout] == [p for p, *_ in UF_TEST]
    assert (s.info["heldout"]["split"], s.info["n_heldout"], s.info["heldout"]["pairs"]) == ("test_prefs", 3, 2)
    assert_accounted(s)


def test_ultrafeedback_ties_keep_and_drop(hub):
    keep = by_prompt(load(hub, "ultrafeedback", "dataset.ties=keep").train)
    assert keep["Is a tomato a fruit?"]["rejected"] == "Yes, botanically."
    assert keep["Is a tomato a fruit?"]["rejected_score"] == 8.5
    drop = load(hub, "ultrafeedback", "dataset.ties=drop")
    assert "Is a tomato a fruit?" not in by_prompt(drop.train)
    assert "Explain recursion briefly." not in by_prompt(drop.heldout)
    assert drop.info["train"]["dropped"]["ties"] == drop.info["heldout"]["dropped"]["ties"] == 1


def test_ultrafeedback_length_filters_and_dedup_switch(hub):
    s = load(hub, "ultrafeedback", "dataset.max_prompt_chars=200", "dataset.max_response_chars=100",
             "dataset.min_prompt_chars=21")
    dropped = s.info["train"]["dropped"]
    assert (dropped["prompt_length"], dropped["response_length"]) == (2, 1)  # haiku, 20-char tomato; Hamlet
    assert all(21 <= len(r["prompt"]) <= 200 for r in s.train + s.heldout)
    assert all(len(r["chosen"]) <= 100 for r in s.train + s.heldout)
    nodup = load(hub, "ultrafeedback", "dataset.dedup=false")
    assert [r["prompt"] for r in nodup.train].count("How can I build a daily drawing habit?") == 2
    assert nodup.info["train"]["dropped"]["duplicate"] == 0
    capped = load(hub, "ultrafeedback", "dataset.max_train=2")
    assert [r["prompt"] for r in capped.train] == ["How can I build a daily drawing habit?", "Is a tomato a fruit?"]
    assert capped.info["train"]["dropped"]["max_train"] == 3
    for splits in (s, nodup, capped):
        assert_accounted(splits)


# ---- HelpSteer ------------------------------------------------------------------------------------------------------
def test_helpsteer_groups_rows_by_prompt(hub):
    s = load(hub, "helpsteer")
    train = by_prompt(s.train)
    assert list(train) == ["List three considerations for assistive technology.", "Describe the water cycle.",
                           UNICODE, "Write a limerick about a cat."]  # first-appearance order; "Define entropy."
    assistive = train["List three considerations for assistive technology."]  # is in validation
    # four rows (one far from the others) -> one record: best vs worst helpfulness
    assert (assistive["chosen"], assistive["rejected"]) == ("Safety, compatibility, ease of use.", "No idea.")
    assert (assistive["chosen_score"], assistive["rejected_score"]) == (3.0, 0.0)
    assert assistive["source_id"] == prompt_hash("List three considerations for assistive technology.")
    assert train["Describe the water cycle."]["rejected"] is None  # equal helpfulness: a tie, unpaired by default
    assert train[UNICODE]["prompt"] == UNICODE and train[UNICODE]["rejected"] is None  # a single response
    assert train["Write a limerick about a cat."]["chosen"] == "A cat with a hat ..."
    info = s.info["train"]
    assert (info["rows"], info["tied"], info["dropped"]["duplicate"], info["dropped"]["in_heldout"]) == (10, 1, 5, 1)
    assert (info["records"], info["pairs"]) == (4, 2)
    assert [r["prompt"] for r in s.heldout] == ["Define entropy.", "Explain photosynthesis.",
                                                "Give a synonym for happy."]
    assert s.info["heldout"]["dropped"]["duplicate"] == 1
    assert s.info["heldout"]["split"] == "validation"
    assert_accounted(s)


def test_helpsteer_ties_and_rank_by(hub):
    keep = by_prompt(load(hub, "helpsteer", "dataset.ties=keep").train)
    water = keep["Describe the water cycle."]  # equal scores: first row chosen, last row rejected
    assert (water["chosen"], water["rejected"]) == ("Evaporation, condensation, precipitation.",
                                                    "Water moves around.")
    drop = load(hub, "helpsteer", "dataset.ties=drop")
    assert "Describe the water cycle." not in by_prompt(drop.train)
    assert UNICODE in by_prompt(drop.train)  # a single response is no tie: kept, without a pair
    both = by_prompt(load(hub, "helpsteer", "dataset.rank_by=[helpfulness,correctness]").train)
    limerick = both["Write a limerick about a cat."]
    assert (limerick["chosen"], limerick["chosen_score"]) == ("There once was a cat from Peru ...", 3.0)
    assert both["Describe the water cycle."]["rejected"] == "Water moves around."  # (3+3)/2 > (3+1)/2: no tie


# ---- Orca (argilla) ------------------------------------------------------------------------------------------------
def test_orca_system_prepend_and_drop(hub):
    s = load(hub, "orca", "dataset.heldout=4")
    records = {r["source_id"]: r for r in s.train + s.heldout}
    assert records["1"]["prompt"] == f"{SYS}\n\nWhy is the sky blue?" and records["1"]["system"] == SYS
    assert records["0"]["prompt"] == ORCA_ROWS[0]["input"] and records["0"]["system"] is None  # "" means none
    assert records["5"]["prompt"] == UNICODE
    assert (records["2"]["chosen"], records["2"]["chosen_score"], records["2"]["rejected_score"]) == \
        ("Bonjour.", 8.0, 5.0)
    drop = load(hub, "orca", "dataset.heldout=4", "dataset.system=drop")
    dropped = {r["source_id"]: r for r in drop.train + drop.heldout}
    assert dropped["1"]["prompt"] == "Why is the sky blue?" and dropped["1"]["system"] == SYS
    # with the system dropped, row 7 repeats row 1's prompt (and row 11 row 9's): de-duplicated
    assert sum(r["prompt"] == "Why is the sky blue?" for r in drop.train + drop.heldout) == 1
    assert sum(drop.info[k]["dropped"]["duplicate"] + drop.info[k]["dropped"]["in_heldout"]
               for k in ("train", "heldout")) == 2
    assert sum(s.info[k]["dropped"]["duplicate"] for k in ("train", "heldout")) == 0
    assert sum(s.info[k]["dropped"]["empty_prompt"] for k in ("train", "heldout")) == 1  # row 8, input "   "
    assert_accounted(s)
    assert_accounted(drop)


def test_orca_ties_and_card_filter(hub):
    ids = {}
    for ties in ("unpair", "keep", "drop"):
        s = load(hub, "orca", "dataset.heldout=4", f"dataset.ties={ties}")
        ids[ties] = {r["source_id"]: r for r in s.train + s.heldout}
    assert ids["unpair"]["0"]["rejected"] is None and ids["unpair"]["0"]["chosen"].startswith("[[")
    assert ids["keep"]["0"]["rejected"] == "Sure! Here are the triplets ..."
    assert set(ids["unpair"]) - set(ids["drop"]) == {"0", "10"}  # the two status == "tie" rows
    card = load(hub, "orca", "dataset.heldout=4", "dataset.card_filter=true")
    kept = {r["source_id"] for r in card.train + card.heldout}
    assert kept == {"1", "2", "5", "6", "7", "9", "11", "12", "13"}  # not 0/10 (tie), 3 (gsm8k), 4 (score 7)
    assert sum(card.info[k]["dropped"]["card_filter"] for k in ("train", "heldout")) == 4
    assert_accounted(card)


def test_orca_heldout_split_is_seeded_and_independent_of_run_seed_and_filters(hub):
    def held(*o):
        return [r["source_id"] for r in load(hub, "orca", "dataset.heldout=4", *o).heldout]

    base = held()
    assert base == held() == held("seed=123")  # same split_seed -> same rows in the same order
    assert base == sorted(base, key=int)  # hub row order is kept
    assert held("dataset.split_seed=1") != base
    assert set(held("dataset.ties=drop", "dataset.card_filter=true")) <= set(base)  # filters never re-draw
    s = load(hub, "orca", "dataset.heldout=4")
    assert s.info["train"]["split"] == s.info["heldout"]["split"] == "train (split_seed=0)"
    assert s.info["train"]["rows"] + s.info["heldout"]["rows"] == len(ORCA_ROWS)


# ---- errors: named, before any model loads ------------------------------------------------------------------------
def test_missing_path_names_it_and_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"dataset.path '.*nope' does not exist.*train.jsonl.gz"):
        load_splits(compose("dataset=helpsteer", f"dataset.path={tmp_path / 'nope'}").dataset)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"could not be loaded.*nvidia/HelpSteer"):
        load_splits(compose("dataset=helpsteer", f"dataset.path={tmp_path / 'empty'}").dataset)


def test_missing_split_names_the_splits_present(hub):
    with pytest.raises(DataError, match=r"no split 'test'.*heldout_split.*splits are: train, validation"):
        load(hub, "helpsteer", "dataset.heldout_split=test")
    six = "test_gen, test_prefs, test_sft, train_gen, train_prefs, train_sft"
    with pytest.raises(DataError, match=rf"no split 'train' \(dataset.train_split\); its splits are: {six}"):
        load(hub, "ultrafeedback", "dataset.train_split=train")


def test_missing_column_names_the_columns_present(hub, tmp_path):
    no_response = Features({k: v for k, v in HELPSTEER.items() if k != "response"})
    write_helpsteer(tmp_path / "hs", features=no_response, readme=None)
    with pytest.raises(DataError, match=r"split 'train' has no column 'response'.*columns are: prompt, helpfulness"):
        load_splits(compose("dataset=helpsteer", f"dataset.path={tmp_path / 'hs'}").dataset)
    with pytest.raises(DataError, match=r"no column 'usefulness'"):
        load(hub, "helpsteer", "dataset.rank_by=[usefulness]")
    with pytest.raises(DataError, match=r"no column 'question'.*columns are: system, input"):
        load(hub, "orca", "dataset.heldout=4", "dataset.prompt_field=question")


@pytest.mark.parametrize("override,match", [
    ("dataset.ties=maybe", r"dataset.ties='maybe' is invalid; valid: unpair, keep, drop"),
    ("dataset.system=keep", r"dataset.system='keep' is invalid; valid: prepend, drop"),
    ("dataset.max_prompt_chars=-1", r"dataset.max_prompt_chars=-1 is invalid"),
    ("dataset.heldout=100", r"dataset.heldout=100 leaves no train"),
    ("dataset.min_prompt_chars=100000", r"0 train and 0 held-out prompts.*prompt_length"),
])
def test_bad_options_are_named(hub, override, match):
    with pytest.raises(DataError, match=match):
        load(hub, "orca", "dataset.heldout=4", override)


# ---- inspection CLI ------------------------------------------------------------------------------------------------
def run_cli(hub, *args):
    env = dict(os.environ, HF_DATASETS_CACHE=str(hub["cache"]), HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "alignpro.data", *args], capture_output=True, text=True,
                          encoding="utf-8", cwd=ROOT, env=env, timeout=120)


def test_cli_prints_counts_and_records(hub):
    out = run_cli(hub, "dataset=helpsteer", f"dataset.path={hub['helpsteer']}", "--n", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"dataset helpsteer (hub: {hub['helpsteer']})"
    end = lines.index("first 2 train records:")
    table = {line[:27].strip(): line[27:].split() for line in lines[1:end]}
    assert table[""] == ["train", "heldout"] and table["split"] == ["train", "validation"]
    assert table["rows read"] == ["10", "4"]
    assert table["dropped: duplicate"] == ["5", "1"]  # rows merged into their prompt
    assert table["dropped: in_heldout"] == ["1", "0"]
    assert table["records kept"] == ["4", "3"]
    records = [json.loads(line) for line in lines[end + 1:]]
    assert [r["prompt"] for r in records] == ["List three considerations for assistive technology.",
                                              "Describe the water cycle."]
    assert records[0]["chosen"] == "Safety, compatibility, ease of use."


def test_cli_error_is_one_line(hub, tmp_path):
    out = run_cli(hub, "dataset=orca", f"dataset.path={tmp_path / 'missing'}")
    assert out.returncode == 2  # bad input
    assert out.stdout == ""
    assert out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith(f"alignpro: dataset.path '{tmp_path / 'missing'}' does not exist")


# ---- dataset=jsonl: a user's own file ----------------------------------------------------------------------------
def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def user_rows(n=20):
    return [{"question": f"Question {i}: how does café {i} work?", "good": f"Short answer {i}.",
             "bad": "" if i % 5 == 0 else f"A long and winding answer {i}.", "uid": f"u{i}"} for i in range(n)]


def test_jsonl_and_csv_files_give_the_same_records_and_a_seeded_heldout(tmp_path):
    import csv

    rows = user_rows()
    jsonl = write_jsonl(tmp_path / "mine.jsonl", rows)
    with (tmp_path / "mine.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    fields = ["dataset.prompt_field=question", "dataset.chosen_field=good", "dataset.rejected_field=bad",
              "dataset.id_field=uid", "dataset.heldout=5"]
    a = load_splits(compose("dataset=jsonl", f"dataset.path={jsonl}", *fields).dataset)
    b = load_splits(compose("dataset=jsonl", f"dataset.path={tmp_path / 'mine.csv'}", *fields).dataset)
    assert a.train == b.train and a.heldout == b.heldout
    assert len(a.heldout) == 5 and len(a.train) == 15
    assert {r["prompt"] for r in a.train} | {r["prompt"] for r in a.heldout} == {r["question"] for r in rows}
    rec = next(r for r in a.train + a.heldout if r["source_id"] == "u0")
    assert rec["chosen"] == "Short answer 0." and rec["rejected"] is None  # an empty cell is no pair
    assert a.info["train"]["pairs"] + a.info["heldout"]["pairs"] == 16
    c = load_splits(compose("dataset=jsonl", f"dataset.path={jsonl}", *fields, "seed=7").dataset)
    assert c.heldout == a.heldout  # the split is fixed by split_seed, not the run's seed
    d = load_splits(compose("dataset=jsonl", f"dataset.path={jsonl}", *fields, "dataset.split_seed=1").dataset)
    assert d.heldout != a.heldout


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_prompts_only_file_is_enough_with_nothing_to_set(tmp_path, suffix):
    rows = [{"prompt": f"p{i}"} for i in range(10)]
    path = write_jsonl(tmp_path / "p.jsonl", rows) if suffix == ".jsonl" else tmp_path / "p.csv"
    if suffix == ".csv":
        path.write_text("prompt\n" + "".join(f"{r['prompt']}\n" for r in rows), encoding="utf-8")
    for nulls in ([], ["dataset.chosen_field=null", "dataset.rejected_field=null"]):
        s = load_splits(compose("dataset=jsonl", f"dataset.path={path}", *nulls).dataset)
        assert len(s.train) == 8 and all(r["chosen"] is None and r["rejected"] is None for r in s.train)
        assert s.info["train"]["pairs"] == 0


def test_a_file_not_in_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "a"}\n{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=rf"^'{path}' is not UTF-8 text: byte 0xe9 on line 2 \(offset 31\); save "
                                        r"the file as UTF-8$"):
        load_splits(compose("dataset=jsonl", f"dataset.path={path}").dataset)


@pytest.mark.parametrize("content, overrides, match", [
    (None, [], "needs dataset.path"),
    ("missing", [], "does not exist"),
    ("suffix", [], "unknown suffix; valid: .jsonl, .csv"),
    ('{"prompt": "a"}\n{"prompt": oops}\n', [], "line 2 is not valid JSON"),
    ('["a list"]\n', [], "line 1 is a JSON list"),
    ('{"prompt": "a"}\n{"text": "b"}\n', [], "row 2 has no prompt field 'prompt'; its fields are: text"),
    ('{"text": "a"}\n', [], "has no prompt field 'prompt'; its columns are: text"),
    ('{"prompt": "a", "chosen": "c"}\n' * 5, ["dataset.rejected_field=worse"], "no field 'worse'"),
    ('{"prompt": "a", "chosen": "c"}\n' * 5, [], "has no field 'rejected'"),  # one side only
    ('{"prompt": "a", "good": "c"}\n' * 5,
     ["dataset.chosen_field=good", "dataset.rejected_field=null", "dataset.id_field=uid"], "no field 'uid'"),
    ("", [], "is empty"),
    ('{"prompt": ""}\n{"prompt": "  "}\n{"prompt": ""}\n', ["dataset.heldout=1", "dataset.chosen_field=null",
                                                             "dataset.rejected_field=null"], "empty_prompt 3"),
])
def test_bad_user_files_are_one_clear_error(tmp_path, content, overrides, match):
    if content is None:
        path_override = []
    elif content == "missing":
        path_override = [f"dataset.path={tmp_path / 'nope.jsonl'}"]
    elif content == "suffix":
        (tmp_path / "data.txt").write_text("x")
        path_override = [f"dataset.path={tmp_path / 'data.txt'}"]
    else:
        (tmp_path / "data.jsonl").write_text(content)
        path_override = [f"dataset.path={tmp_path / 'data.jsonl'}"]
    with pytest.raises(DataError, match=match.replace("(", r"\(").replace("[", r"\[")):
        load_splits(compose("dataset=jsonl", *path_override, *overrides).dataset)


def test_the_steerable_world_shares_prompts_and_split_with_the_factual_one(embedded_splits):
    s = load_splits(compose("dataset=concise").dataset)
    assert [r["prompt"] for r in s.heldout] == [r["prompt"] for r in embedded_splits.heldout]
    assert len(s.heldout) == 72 and len(s.train) == 288
    words = [(len(r["chosen"].split()), len(r["rejected"].split())) for r in s.train]
    assert all(c <= 25 < r for c, r in words)  # chosen: concise; rejected: the long answer
    with pytest.raises(DataError, match="dataset.asset 'nope.jsonl' is not shipped; valid: concise_prefs.jsonl"):
        load_splits(compose("dataset=concise", "dataset.asset=nope.jsonl").dataset)


FORMS = {  # the contextual world's three answer forms (alignpro/data/CONTEXT_DATA.md)
    "sentence": lambda t: "\n" not in t and 8 <= len(t.split()) <= 20,
    "list": lambda t: 3 <= len(re.findall(r"(?m)^\d+\. \S", t)) <= 6,
    "prose": lambda t: "\n" not in t and len(t.split()) >= 30 and not re.search(r"(^|\s)\d+\. ", t),
}
PREFERRED = {"lookup": "sentence", "howto": "list", "why": "prose"}


def test_the_contextual_world_prefers_one_form_per_kind_and_rejects_the_others():
    rows = [json.loads(line) for line in (ROOT / "alignpro" / "data" / "context_prefs.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"ctx-{i:04d}" for i in range(1, 361)]
    assert [r["kind"] for r in rows[:6]] == ["lookup", "howto", "why"] * 2  # interleaved: any first n mixes kinds
    assert len({r["prompt"] for r in rows}) == 360
    for kind, form in PREFERRED.items():
        mine = [r for r in rows if r["kind"] == kind]
        assert len(mine) == 120 and len({r["category"] for r in mine}) == 12
        assert all(FORMS[form](r["chosen"]) for r in mine), kind
        others = sorted(set(FORMS) - {form})  # each rejected answer is in another kind's form, half each
        assert sorted(r["rejected_style"] for r in mine) == sorted(others * 60)
        assert all(FORMS[r["rejected_style"]](r["rejected"]) and not FORMS[form](r["rejected"]) for r in mine)
        # rejected_other: the same answer in the third form, so each prompt has all three
        third = {r["id"]: (set(others) - {r["rejected_style"]}).pop() for r in mine}
        assert all(FORMS[third[r["id"]]](r["rejected_other"]) for r in mine)
        assert all(not FORMS[f](r["rejected_other"]) for r in mine for f in FORMS if f != third[r["id"]])
    s = load_splits(compose("dataset=context").dataset)
    assert len(s.train) == 288 and len(s.heldout) == 72
    assert Counter(r["kind"] for r in s.heldout) == {"lookup": 28, "howto": 20, "why": 24}
    assert {r["source_id"]: r["kind"] for r in s.train} == {r["id"]: r["kind"] for r in rows
                                                             if r["prompt"] in {t["prompt"] for t in s.train}}
