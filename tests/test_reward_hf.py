
import pytest
import torch

from alignpro.models.assets import AssetError
from alignpro.models.reward import build_reward
from alignpro.models.reward_hf import HFClassifierReward
from tests.conftest import compose

# ---- HFClassifierReward: RM-Gemma-2B's calling convention on a tiny random Gemma classifier -----------------------
PAD, EOS, BOS = 0, 1, 2
PAIRS = [("What is 2+2?", "4 "), ("Hi", "Hello there, how can I help you today?"), ("  Name a colour. ", "Blue")]


def gemma_like_tokenizer(adds_bos: bool = True):
    """A byte-level tokenizer with Gemma's special tokens and ids (pad 0, eos 1, bos 2) and no chat template; with
    ``adds_bos`` its post-processor prepends <bos> as Gemma's tokenizer does. Built in-process, nothing downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(specials)
    if adds_bos:
        tk.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                          special_tokens=[("<bos>", BOS)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])


def tiny_gemma_rm(vocab_size: int, num_labels: int = 1, seed: int = 0):
    from transformers import GemmaConfig, GemmaForSequenceClassification

    torch.manual_seed(seed)
    cfg = GemmaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=16, num_labels=num_labels,
                      pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS)
    return GemmaForSequenceClassification(cfg).eval()


@pytest.fixture(scope="module")
def gemma_rm_dir(tmp_path_factory):
    """A saved tiny RM folder (model + tokenizer without a chat template), like a hub checkout of RM-Gemma-2B."""
    path = tmp_path_factory.mktemp("rm_gemma")
    tok = gemma_like_tokenizer()
    model = tiny_gemma_rm(len(tok))
    with torch.no_grad():  # a larger head, so raw logits leave (0, 1) and a stray sigmoid would show
        model.score.weight.mul_(200)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def load_rm(directory, *overrides: str):
    return build_reward(compose("reward=rm_gemma_2b", f"reward.model_id={directory}", *overrides).reward, [], [])


def by_hand(x: str, y: str) -> str:
    """Gemma's format written out (docs/datasets-models.md §7); the template trims each message's content."""
    return f"<bos><start_of_turn>user\n{x.strip()}<end_of_turn>\n<start_of_turn>model\n{y.strip()}<end_of_turn>\n"


def direct_logits(directory, texts: list[str], max_length: int) -> list[float]:
    """The card's equivalent direct call: tok(texts without <bos>, padding, truncation) -> model(**enc).logits[:, 0]."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    tok.truncation_side = "left"
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    enc = tok([t.removeprefix("<bos>") for t in texts], padding=True, truncation=True, max_length=max_length,
              return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits[:, 0].tolist()


def test_rm_gemma_2b_scores_the_hand_written_gemma_format_raw(gemma_rm_dir):
    rm = load_rm(gemma_rm_dir)
    assert rm.stats["chat_template"] == "trl:gemma" and rm.stats["tokenizer_adds_bos"] is True
    xs, ys = zip(*PAIRS, strict=True)
    assert [rm.render(x, y) for x, y in PAIRS] == [by_hand(x, y).removeprefix("<bos>") for x, y in PAIRS]
    got = rm.score(list(xs), list(ys))
    assert got == pytest.approx(direct_logits(gemma_rm_dir, [by_hand(x, y) for x, y in PAIRS], 4096), abs=1e-5)
    assert all(isinstance(v, float) for v in got)
    assert any(v < 0 or v > 1 for v in got)  # raw logits: a sigmoid would squash every score into (0, 1)


def test_rm_gemma_2b_equals_the_model_cards_pipeline(gemma_rm_dir):
    """The card's path under transformers 5: text-classification pipeline, top_k=None, function_to_apply="none"."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    rm = load_rm(gemma_rm_dir)
    texts = [rm.render(x, y) for x, y in PAIRS]  # the card strips <bos>; the pipeline's tokenizer adds it back
    pipe = pipeline("text-classification", model=AutoModelForSequenceClassification.from_pretrained(gemma_rm_dir),
                    tokenizer=AutoTokenizer.from_pretrained(gemma_rm_dir), top_k=None, function_to_apply="none")
    card = [out[0]["score"] for out in pipe(texts, batch_size=1)]
    assert rm.score([x for x, _ in PAIRS], [y for _, y in PAIRS]) == pytest.approx(card, abs=1e-5)
    squashed = [out[0]["score"] for out in pipe(texts, batch_size=1, function_to_apply="sigmoid")]
    assert card != pytest.approx(squashed, abs=1e-3)  # the sigmoid the card switches off does change the scores


@pytest.mark.parametrize("adds_bos", [True, False])
def test_exactly_one_bos_per_row_whatever_the_tokenizer_does(gemma_rm_dir, adds_bos):
    """Gemma's tokenizer adds BOS (the template's is stripped); a tokenizer that adds none keeps the template's."""
    from transformers import AutoModelForSequenceClassification

    from alignpro.models.reward_hf import fallback_chat_template

    tok = gemma_like_tokenizer(adds_bos)
    tok.chat_template = fallback_chat_template("gemma")
    rm = HFClassifierReward(AutoModelForSequenceClassification.from_pretrained(gemma_rm_dir).eval(), tok, 4096)
    assert rm.adds_bos is adds_bos
    assert rm.render("a", "b").startswith("<bos>") is not adds_bos
    rows = rm.encode([x for x, _ in PAIRS], [y for _, y in PAIRS])
    assert all(row[0] == BOS and row.count(BOS) == 1 for row in rows)
    reference = load_rm(gemma_rm_dir)  # same ids whichever tokenizer does the BOS, so the same scores
    assert rows == reference.encode([x for x, _ in PAIRS], [y for _, y in PAIRS])
    assert rm.score([x for x, _ in PAIRS], [y for _, y in PAIRS]) == pytest.approx(
        reference.score([x for x, _ in PAIRS], [y for _, y in PAIRS]), abs=1e-6)


def test_batched_scores_equal_one_by_one(gemma_rm_dir):
    """Right padding with config.pad_token_id set: padding never changes a score, nor does the batch order."""
    xs = [x for x, _ in PAIRS] * 2 + ["Why is the sky blue? Explain in detail, please."]
    ys = [y for _, y in PAIRS] * 2 + ["Rayleigh scattering of sunlight by the air."]
    batched = load_rm(gemma_rm_dir, "reward.batch_size=4").score(xs, ys)
    single = load_rm(gemma_rm_dir, "reward.batch_size=1")
    assert single.model.config.pad_token_id == PAD
    assert batched == pytest.approx([single.score([x], [y])[0] for x, y in zip(xs, ys, strict=True)], abs=1e-5)


@pytest.mark.parametrize("adds_bos", [True, False])
def test_left_truncation_keeps_bos_and_the_end_of_a_long_answer(gemma_rm_dir, adds_bos):
    from transformers import AutoModelForSequenceClassification

    from alignpro.models.reward_hf import fallback_chat_template

    max_length = 24
    tok = gemma_like_tokenizer(adds_bos)
    tok.chat_template = fallback_chat_template("gemma")
    rm = HFClassifierReward(AutoModelForSequenceClassification.from_pretrained(gemma_rm_dir).eval(), tok,
                            max_length)
    answer = "The first part will be cut off. " * 5 + "THE END"
    (row,) = rm.encode(["Tell me a story"], [answer])
    full = gemma_like_tokenizer(False)(by_hand("Tell me a story", answer))["input_ids"]  # BOS + all, untruncated
    assert len(full) > max_length and row == [BOS] + full[-(max_length - 1) :]
    assert tok.decode(row[1:]).endswith("THE END<end_of_turn>\n")
    with torch.no_grad():
        expected = rm.model(input_ids=torch.tensor([row])).logits[0, 0].item()
    assert rm.score(["Tell me a story"], [answer]) == pytest.approx([expected], abs=1e-5)
    if adds_bos:  # the RLHFlow training script's convention: the tokenizer's own truncation_side="left"
        assert rm.score(["Tell me a story"], [answer]) == pytest.approx(
            direct_logits(gemma_rm_dir, [by_hand("Tell me a story", answer)], max_length), abs=1e-5)


def test_generic_hf_classifier_config_loads_a_local_folder(gemma_rm_dir):
    cfg = compose("reward=hf_classifier", f"reward.model_id={gemma_rm_dir}", "reward.fallback_chat_template=gemma",
                  "reward.max_length=512").reward
    rm = build_reward(cfg, [], [])
    assert rm.max_length == 512 and rm.stats["model"] == str(gemma_rm_dir)
    assert rm.score(["q"], ["a"]) == pytest.approx(load_rm(gemma_rm_dir).score(["q"], ["a"]), abs=1e-6)


def test_missing_pad_token_falls_back_to_the_checkpoints_pad_id(gemma_rm_dir):
    from transformers import AutoModelForSequenceClassification

    from alignpro.models.reward_hf import fallback_chat_template

    tok = gemma_like_tokenizer()
    tok.pad_token = None
    tok.chat_template = fallback_chat_template("gemma")
    rm = HFClassifierReward(AutoModelForSequenceClassification.from_pretrained(gemma_rm_dir).eval(), tok, 4096)
    assert tok.pad_token_id == PAD == rm.model.config.pad_token_id


def test_config_pad_id_is_set_from_the_tokenizer(gemma_rm_dir):
    """A checkpoint without config.pad_token_id cannot pool a padded batch; the reward sets it to the tokenizer's."""
    from transformers import AutoModelForSequenceClassification

    from alignpro.models.reward_hf import fallback_chat_template

    model = AutoModelForSequenceClassification.from_pretrained(gemma_rm_dir).eval()
    model.config.pad_token_id = None
    tok = gemma_like_tokenizer()
    tok.chat_template = fallback_chat_template("gemma")
    rm = HFClassifierReward(model, tok, 4096, batch_size=3)
    assert model.config.pad_token_id == PAD
    xs, ys = [x for x, _ in PAIRS], [y for _, y in PAIRS]
    assert rm.score(xs, ys) == pytest.approx(load_rm(gemma_rm_dir).score(xs, ys), abs=1e-5)


def test_hf_classifier_errors_say_what_to_do(gemma_rm_dir, tmp_path):
    with pytest.raises(ValueError, match=rf"'{gemma_rm_dir}' has no chat template.*fallback_chat_template.*gemma"):
        build_reward(compose("reward=hf_classifier", f"reward.model_id={gemma_rm_dir}").reward, [], [])
    with pytest.raises(ValueError, match=r"fallback_chat_template='gema'.*valid: .*gemma, .*llama3_1"):
        load_rm(gemma_rm_dir, "reward.fallback_chat_template=gema")
    with pytest.raises(AssetError, match=r"reward.source=hub needs reward.model_id \(a hub id or a local folder\)"):
        build_reward(compose("reward=hf_classifier").reward, [], [])  # unvalidated; the validator names it first
    two = tmp_path / "two_labels"
    tok = gemma_like_tokenizer()
    tiny_gemma_rm(len(tok), num_labels=2).save_pretrained(two)
    tok.save_pretrained(two)
    with pytest.raises(ValueError, match="num_labels=2"):
        load_rm(two)
    with pytest.raises(ValueError, match="num_labels=2"):
        HFClassifierReward(tiny_gemma_rm(len(tok), num_labels=2), tok, 64)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        load_rm(gemma_rm_dir).score(["a", "b"], ["c"])
    assert load_rm(gemma_rm_dir).score([], []) == []
