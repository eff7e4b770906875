"""Numbers and text at the edges (docs/faults.md): a NaN/inf reward or log-prob stops the run with its sample saved,
an empty rewrite is answered, scored and counted, a prompt longer than the context is cut from the left and counted,
and pad == EOS masks only padding. Real tiny models built in-process and the real TRL training path throughout."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import pytest
import torch

from alignpro.models.chat import chat, chat_inputs
from alignpro.models.decode import decode
from alignpro.models.generation import GenerationEngine, generate_chat
from alignpro.models.sampling import PromptCuts, Sampling
from alignpro.run.directory import RunDir, read_jsonl
from alignpro.run.errors import NonFiniteError
from tests.conftest import ROOT, compose

GREEDY = Sampling(8, temperature=0)
ENGINES = [GenerationEngine(), GenerationEngine("compiled", compile=False)]
PROMPTS = ["Hi", "A much longer prompt about cooking pasta and more", "Why?", "x y z", "Tell me about rivers"]


class NaNAt:
    """A real reward model that breaks on one answer: the tiny BT reward, except that the ``at``-th answer it scores
    (counting over all its calls) gets ``value``."""

    def __init__(self, reward, at: int, value: float = math.nan):
        self.reward, self.at, self.value, self.seen = reward, at, value, 0

    def score(self, prompts, responses):
        out = list(self.reward.score(prompts, responses))
        if self.seen <= self.at < self.seen + len(out):
            out[self.at - self.seen] = self.value
        self.seen += len(out)
        return out


def llama_like(tiny_lm, *, max_position_embeddings: int | None = None, pad_is_eos: bool = False, seed: int = 0):
    """tiny_lm's Llama with larger random weights (row-dependent text) and an untied output head, optionally a short
    context or the tokenizer's pad set to its EOS (what alignpro.models.assets does for Llama-3.1; SmolLM2 ships it
    so)."""
    from transformers import LlamaForCausalLM

    model, tok = tiny_lm
    tok = copy.deepcopy(tok)
    cfg = copy.deepcopy(model.config)
    cfg.initializer_range, cfg.tie_word_embeddings = 0.2, False
    if max_position_embeddings:
        cfg.max_position_embeddings = max_position_embeddings
    if pad_is_eos:
        tok.pad_token = tok.eos_token
        cfg.pad_token_id = tok.eos_token_id
    torch.manual_seed(seed)
    out = LlamaForCausalLM(cfg).eval()
    out.generation_config = copy.deepcopy(model.generation_config)
    out.generation_config.pad_token_id = tok.pad_token_id
    return out, tok


def save(model, tok, path):
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def tiny_rloo(tmp_path, model_path: str, rows, reward_fn, sampling: Sampling, run_dir: RunDir | None = None,
              max_steps: int = 1, trainer: str = "rloo"):
    """A real TRL RLOO (or GRPO) trainer from alignpro.methods.rl.build_trainer on ``model_path`` (full fine-tuning,
    fp32,
    CPU)."""
    from alignpro.methods.rl import build_trainer, trainer_args

    cfg = compose("experiment=smoke", f"trainer={trainer}", f"trainer.max_steps={max_steps}", "trainer.save_steps=0",
                  f"trainer.prompts_per_step={len(rows)}").trainer
    args = trainer_args(cfg, beta=0.2, seed=0, output_dir=str(tmp_path / "out"), sampling=sampling, device="cpu")
    return build_trainer(cfg, model_path=model_path, model_dtype=torch.float32, train_rows=rows,
                         reward_fn=reward_fn, args=args, callbacks=[], run_dir=run_dir)


def conversation_rows(prompts):
    return [{"prompt": chat(p), "x": p} for p in prompts]


# ---- 1. NaN/inf rewards and log-probs stop the run ------------------------------------------------------------------
def test_a_nan_reward_mid_training_stops_the_run_before_trl_sees_it(tmp_path, tiny_reward, embedded_splits):
    """Real Align-Pro training (TRL RLOO) with a reward that is NaN for the 2nd answer of step 2: the run stops with
    NonFiniteError naming it; the sample is saved; step 1's log row, samples and checkpoint stay; nothing of step 2
    reaches train_log.jsonl or samples.jsonl, and no trained prompter is saved."""
    from alignpro.methods.base import Job
    from alignpro.methods.registry import build_method
    from alignpro.models.frozen import build_frozen

    cfg = compose("experiment=smoke", "method=alignpro", "trainer.max_steps=3", "trainer.save_steps=1")
    per_step = cfg.trainer.prompts_per_step * cfg.trainer.num_generations
    files = RunDir(tmp_path)
    reward = NaNAt(tiny_reward, at=per_step + 1)
    with pytest.raises(NonFiniteError) as err:
        build_method(cfg.method).run(Job(cfg, embedded_splits.train, reward, build_frozen(cfg.frozen), files))
    msg = str(err.value)
    assert f"reward=nan for 1 of {per_step} samples of training step 2/3" in msg
    assert str(files.nonfinite) in msg and "\n" not in msg
    saved = json.loads(files.nonfinite.read_text())
    assert saved["what"] == "reward" and saved["value"] == "nan" and saved["step"] == 1
    [sample] = saved["samples"]
    assert sample["index"] == 1 and sample["r"] == "nan" and sample["step"] == 1
    assert {"x", "x_prime", "y"} <= sample.keys() and isinstance(sample["y"], str)
    log = files.read_train_log()
    assert [row["step"] for row in log if "reward" in row] == [1]
    assert all(math.isfinite(row["reward"]) for row in log if "reward" in row)
    assert [s["step"] for s in read_jsonl(files.samples)] == [0] * per_step  # step 2's rows never written
    assert (files.checkpoints / "checkpoint-1" / "COMPLETE").is_file()
    assert not files.model("prompter").exists() and not files.metrics.exists()


@pytest.mark.parametrize("value", [math.inf, -math.inf, None])
def test_inf_and_missing_rewards_stop_both_reward_functions(tmp_path, value, lively_lm):
    from alignpro.methods.alignpro import AlignProReward
    from alignpro.methods.oracle import OracleReward
    from alignpro.models.frozen import HFResponder

    class Broken:
        def score(self, prompts, responses):
            return [0.5, value][: len(responses)]

    files = RunDir(tmp_path)
    frozen = HFResponder(*lively_lm, GREEDY)
    completions = [[{"role": "assistant", "content": t}] for t in ("a rewrite", "another")]
    for fn in (AlignProReward(frozen, Broken(), samples=files.sample_log(), run_dir=files),
               OracleReward(Broken(), files.sample_log(), run_dir=files)):
        with pytest.raises(NonFiniteError, match=f"reward={value} for 1 of 2 samples"):
            fn(prompts=[None, None], completions=completions, x=["x1", "x2"])
        assert json.loads(files.nonfinite.read_text())["samples"][0]["r"] == str(value)
        assert not files.samples.exists()  # the batch never reaches samples.jsonl


def test_the_cli_stops_with_exit_code_1_and_one_line_on_a_nan_reward_model(tmp_path, tiny_lm):
    """``python -m alignpro.train`` with a reward model whose score head is NaN (a corrupted RM, real weights): exit
    code 1, one line naming reward=nan and the saved file, the sample saved, and no metrics.json."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from alignpro.models.assets import tiny_tokenizer

    tok = tiny_tokenizer()
    rm = LlamaForSequenceClassification(LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                                    num_attention_heads=2, num_key_value_heads=1,
                                                    intermediate_size=64, num_labels=1,
                                                    pad_token_id=tok.pad_token_id))
    with torch.no_grad():
        rm.score.weight.fill_(math.nan)
    rm_dir = save(rm, tok, tmp_path / "nan-rm")
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "alignpro.train", "experiment=smoke", "logger=none",
                           "reward=hf_classifier", f"reward.model_id={rm_dir}", "reward.max_length=512",
                           f"hydra.run.dir={run_dir}"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "reward=nan for 4 of 4 samples of training step 1/2" in proc.stderr
    assert str(run_dir / "nonfinite_sample.json") in proc.stderr
    assert len(json.loads((run_dir / "nonfinite_sample.json").read_text())["samples"]) == 4
    assert not (run_dir / "metrics.json").exists() and (run_dir / "error.txt").exists()
    assert not any("reward" in row for row in read_jsonl(run_dir / "train_log.jsonl"))


@pytest.mark.parametrize("shift", [False, True])
def test_a_nan_reward_at_evaluation_stops_before_any_metric(tmp_path, tiny_reward, shift):
    """The held-out evaluation checks every reward (with answer_shift also those of the direct answers, which it
    averages too) before computing a mean, variance or CI: NonFiniteError, the sample saved, no summary."""
    from alignpro.methods.base import Arm
    from alignpro.models.frozen import build_frozen
    from alignpro.models.prompter import load_prompter
    from alignpro.report.evaluate import eval_samplings, evaluate

    cfg = compose("experiment=smoke")
    answer, rewrite = eval_samplings(cfg.eval, 4, 4)
    arm = Arm("base_prompter", load_prompter(cfg.prompter), build_frozen(cfg.frozen))
    files = RunDir(tmp_path)
    at = 3 + 2 if shift else 2  # shift: the 3rd answer to x itself, scored after the 3 answers to x′
    with pytest.raises(NonFiniteError, match="reward=nan for 1 of 3 samples of the held-out evaluation; no metrics"):
        evaluate(arm, ["p1", "p2", "p3"], NaNAt(tiny_reward, at), answer, rewrite, n_resamples=50, shift=shift,
                 run_dir=files)
    [sample] = json.loads(files.nonfinite.read_text())["samples"]
    assert sample["index"] == 2 and sample["x"] == "p3"
    assert (sample["r_direct"] == "nan") if shift else (sample["r"] == "nan")


def test_a_nan_reward_at_evaluation_writes_no_metrics_json(tmp_path, tiny_reward, monkeypatch):
    """Through alignpro.train.train (method=no_finetune: the evaluation is the first scoring): the run raises and
    leaves neither metrics.json nor eval_samples.jsonl."""
    import alignpro.models.reward
    import alignpro.train

    # train() imports its model factories when it runs, so the factory is replaced where it is defined.
    monkeypatch.setattr(alignpro.models.reward, "build_reward", lambda *a, **k: NaNAt(tiny_reward, 1))
    cfg = compose("experiment=smoke", "method=no_finetune", "logger=none")
    with pytest.raises(NonFiniteError, match="the held-out evaluation"):
        alignpro.train.train(cfg, tmp_path)
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "eval_samples.jsonl").exists()


@pytest.mark.parametrize("name", ["rloo", "grpo"])
def test_a_nan_log_prob_stops_training_before_the_update(tmp_path, tiny_lm, name):
    """A reference model with a NaN weight (a corrupted copy) through TRL's real RLOO/GRPO step: its scoring pass
    yields NaN log-probs, which TRL would turn into a zeroed advantage and a dropped KL; the guard stops the run at
    step 1 before any optimizer step, the rollouts saved as text."""
    from alignpro.methods.rl import FiniteLogs

    model, tok = llama_like(tiny_lm)
    path = save(model, tok, tmp_path / "policy")
    files = RunDir(tmp_path / "run")
    trainer = tiny_rloo(tmp_path, path, conversation_rows(PROMPTS[:2]), lambda completions, **_: [0.0] * len(
        completions), Sampling(4), files, trainer=name)
    assert isinstance(trainer.callback_handler.callbacks[0], FiniteLogs)  # before the JSONL log, W&B and the bar
    with torch.no_grad():
        trainer.ref_model.model.norm.weight.fill_(math.nan)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(NonFiniteError, match="log-prob=nan in the reference model's scoring pass at training step 1"):
        trainer.train()
    assert trainer.state.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())  # never trained on
    saved = json.loads(files.nonfinite.read_text())
    assert saved["what"] == "log-prob" and len(saved["samples"]) == 4  # 2 prompts x 2 rollouts
    assert all(s["prompt"] and s["log_probs"][0] == "nan" for s in saved["samples"])


def test_a_nan_loss_or_a_kl_trl_dropped_stops_at_the_logged_row(tmp_path):
    """The logged row is checked before train_log.jsonl, W&B and the checkpoint see it; a None KL is TRL's mean
    over NaN values only. transformers' own NaN filter for the loss is switched off, so a NaN loss shows."""
    from transformers import TrainerState

    from alignpro.methods.rl import FiniteLogs, trainer_args
    from alignpro.run.directory import Sample

    args = trainer_args(compose("experiment=smoke").trainer, beta=0.1, seed=0, output_dir=str(tmp_path / "o"),
                        sampling=Sampling(4), device="cpu")
    assert args.logging_nan_inf_filter is False
    files = RunDir(tmp_path)
    files.sample_log().write([Sample("x", "x'", "y", 0.1, 2), Sample("x", "x'", "y", 0.2, 1)])
    state = TrainerState(global_step=3, max_steps=5)
    for logs, line in (({"loss": math.nan, "reward": 0.1}, "loss=nan logged at training step 3"),
                       ({"loss": 0.1, "kl": None}, "kl=None logged at training step 3")):
        with pytest.raises(NonFiniteError, match=line + ".*samples.jsonl \\(step 2\\)"):
            FiniteLogs(files).on_log(args, state, None, logs=logs)
        saved = json.loads(files.nonfinite.read_text())
        assert [s["r"] for s in saved["samples"]] == [0.1]  # the step's own samples
    FiniteLogs(files).on_log(args, state, None, logs={"loss": 0.0, "kl": 0.0, "reward": -1.0})  # finite: passes


def test_an_inf_grad_norm_under_fp16_is_a_skipped_step_not_a_stop(tmp_path):
    """fp16's loss scaler (trainer.extra={fp16: true}) finds an inf/NaN gradient, skips the optimizer step and
    lowers its scale, and transformers logs that step's non-finite gradient norm: the run goes on. The same row
    without fp16, or a non-finite loss under fp16, still stops it."""
    from transformers import TrainerState

    from alignpro.methods.rl import FiniteLogs, trainer_args

    def args(*overrides):
        return trainer_args(compose("experiment=smoke", *overrides).trainer, beta=0.1, seed=0,
                            output_dir=str(tmp_path / "o"), sampling=Sampling(4), device="cpu")

    fp16, fp32 = args("+trainer.extra={fp16: true}"), args()
    assert fp16.fp16 and not fp32.fp16
    files = RunDir(tmp_path)
    state = TrainerState(global_step=3, max_steps=5)
    for norm in (math.inf, math.nan):
        FiniteLogs(files).on_log(fp16, state, None, logs={"loss": 0.1, "grad_norm": norm, "kl": 0.0, "reward": 0.1})
    assert not files.nonfinite.exists()  # nothing stopped, nothing saved
    with pytest.raises(NonFiniteError, match="grad_norm=inf logged at training step 3"):
        FiniteLogs(files).on_log(fp32, state, None, logs={"loss": 0.1, "grad_norm": math.inf, "kl": 0.0})
    with pytest.raises(NonFiniteError, match="loss=inf logged at training step 3"):  # only the norm is exempt
        FiniteLogs(files).on_log(fp16, state, None, logs={"loss": math.inf, "grad_norm": math.inf, "kl": 0.0})


# ---- 2. an empty rewrite is answered, scored and counted --------------------------------------------------------
def test_an_empty_rewrite_is_answered_scored_and_counted_in_the_step(tmp_path, lively_lm, tiny_reward):
    from alignpro.methods.alignpro import AlignProReward
    from alignpro.models.frozen import HFResponder

    model, tok = lively_lm
    fn = AlignProReward(HFResponder(model, tok, GREEDY), tiny_reward, samples=RunDir(tmp_path).sample_log())
    metrics = {}
    texts = ["", "Tell me about rivers", "  "]
    out = fn(prompts=[None] * 3, completions=[[{"role": "assistant", "content": t}] for t in texts],
             x=["Why?", "Why?", "How?"], log_metric=metrics.__setitem__)
    rows = read_jsonl(tmp_path / "samples.jsonl")
    assert [r["x_prime"] for r in rows] == texts  # kept as written, answered like any other
    assert rows[0]["y"] == generate_chat(model, tok, [chat("")], GREEDY)[0]  # π_F's own answer to an empty turn
    assert out == tiny_reward.score(["Why?", "Why?", "How?"], [r["y"] for r in rows])
    assert all(math.isfinite(r) for r in out)
    assert metrics["empty_rewrites"] == pytest.approx(2 / 3)


def test_the_api_frozen_model_gets_an_empty_prompt_as_it_is():
    from alignpro.models.api import ChatClient
    from alignpro.models.frozen import APIResponder
    from tests.server import ScriptedServer, chat_completion

    with ScriptedServer(lambda body, headers: (200, chat_completion("an answer"))) as srv:
        frozen = APIResponder(ChatClient(srv.base_url, "m", api_key_env=None), Sampling(4))
        assert frozen.answer([""]) == ["an answer"]
    assert srv.bodies[0]["messages"] == [{"role": "user", "content": ""}]


def test_the_evaluation_counts_empty_rewrites_and_still_scores_them(tiny_lm, tiny_reward):
    """A prompter whose output head is zero writes only <|pad|> (argmax of equal logits is id 0), a special token:
    every rewrite decodes to ''. π_F answers each, the reward scores each, metrics count them."""
    from alignpro.methods.base import Arm
    from alignpro.models.frozen import HFResponder
    from alignpro.models.prompter import PAPER_META_PROMPT, Prompter
    from alignpro.report.evaluate import evaluate

    model, tok = llama_like(tiny_lm)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    arm = Arm("base_prompter", Prompter(model, tok, PAPER_META_PROMPT), HFResponder(*llama_like(tiny_lm), GREEDY))
    summary, rows = evaluate(arm, ["p1", "p2"], tiny_reward, GREEDY, GREEDY, samples_per_prompt=2, n_resamples=50)
    assert [s.x_prime for s in rows] == [""] * 4 and all(isinstance(s.y, str) for s in rows)
    assert summary["empty_rewrites"] == 4 and summary["n"] == 4 and math.isfinite(summary["reward_mean"])
    assert summary["truncated_prompts"] == 0 and summary["truncated_rewrites"] == 0


# ---- 3. a prompt longer than the context is cut from the left, answered and counted -------------------------------
LONG = "Tell me about rivers and mountains and the sea. " * 12


@pytest.mark.parametrize("engine", ENGINES, ids=["hf", "compiled"])
def test_a_prompt_longer_than_the_context_is_cut_from_the_left_and_counted(tiny_lm, engine):
    """Context 64, 8 new tokens: a prompt of 150+ tokens keeps its BOS and its last 55 tokens (the generation prompt
    among them), is answered from exactly those, and is counted; a short prompt beside it is untouched."""
    model, tok = llama_like(tiny_lm, max_position_embeddings=64)
    convs = [chat(LONG), chat("Hi")]
    full = chat_inputs(tok, convs[:1])["input_ids"][0].tolist()
    assert len(full) > 150 and full[0] == tok.bos_token_id
    cut = chat_inputs(tok, convs[:1], max_prompt_tokens=64 - 8)["input_ids"][0].tolist()
    assert cut == [tok.bos_token_id] + full[-55:]
    cuts = PromptCuts()
    out = generate_chat(model, tok, convs, GREEDY, batch_size=2, engine=engine, cuts=cuts)
    assert cuts.n == 1
    enc = {k: torch.tensor([v]) for k, v in (("input_ids", cut), ("attention_mask", [1] * len(cut)))}
    direct = model.generate(**enc, do_sample=False, max_new_tokens=8, pad_token_id=tok.pad_token_id)
    assert out[0] == tok.decode(direct[0, len(cut):], skip_special_tokens=True).strip()
    assert out[1] == generate_chat(model, tok, convs[1:], GREEDY, engine=engine)[0]


def test_a_model_with_learned_positions_answers_a_long_prompt_instead_of_crashing(tiny_lm):
    """GPT-2's position table has n_positions rows: before the cut a long prompt raised IndexError mid-run."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = tiny_lm
    torch.manual_seed(0)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                     pad_token_id=tok.pad_token_id)).eval()
    cuts = PromptCuts()
    [answer] = generate_chat(gpt, tok, [chat(LONG)], GREEDY, cuts=cuts)
    assert isinstance(answer, str) and cuts.n == 1


def test_max_new_tokens_that_fill_the_context_are_refused_for_every_prompt(tiny_lm):
    from alignpro.run.errors import BadInput

    model, tok = llama_like(tiny_lm, max_position_embeddings=64)
    with pytest.raises(BadInput, match=r"max_new_tokens=64 leaves no room for a prompt in .* \(64 tokens"):
        generate_chat(model, tok, [chat("Hi")], Sampling(64, temperature=0))


def test_the_evaluation_reports_cut_prompts_and_cut_rewrites(tiny_lm, tiny_reward):
    """An append-mode prompter (x′ = x + instruction) and π_F, both with a 64-token context, on one long and one
    short prompt: the long x is cut as the prompter's input and again as π_F's input."""
    from alignpro.methods.base import Arm
    from alignpro.models.frozen import HFResponder
    from alignpro.models.prompter import Prompter
    from alignpro.report.evaluate import evaluate

    small = llama_like(tiny_lm, max_position_embeddings=64)
    prompter = Prompter(*small, "Rewrite: [PROMPT]", mode="append")  # short, so only the long x is cut
    arm = Arm("base_prompter", prompter, HFResponder(*llama_like(tiny_lm, max_position_embeddings=64), GREEDY))
    summary, rows = evaluate(arm, [LONG, "Hi"], tiny_reward, GREEDY, GREEDY, n_resamples=50)
    assert summary["truncated_prompts"] == 1 and summary["truncated_rewrites"] == 1 and len(rows) == 2
    no_prompter = Arm("no_finetune", None, arm.responder)
    assert evaluate(no_prompter, [LONG, LONG, "Hi"], tiny_reward, GREEDY, GREEDY, n_resamples=50)[0][
        "truncated_prompts"] == 2


def test_trl_rollouts_cut_a_long_policy_prompt_and_log_it(tmp_path, tiny_lm):
    """TRL 1.16 has no max_prompt_length: the policy's prompt ids are cut in its tokenizer step, so the rollout and
    every log-prob pass see the same cut prompt; the step logs truncated_prompts (share of rollouts cut) and counts
    exactly budget prompt tokens per long rollout in num_tokens."""
    model, tok = llama_like(tiny_lm, max_position_embeddings=64)
    path = save(model, tok, tmp_path / "policy")
    trainer = tiny_rloo(tmp_path, path, conversation_rows([LONG, "Hi"]),
                        lambda completions, **_: [0.0] * len(completions), Sampling(8))
    trainer.train()
    [row] = [r for r in trainer.state.log_history if "truncated_prompts" in r]
    assert row["truncated_prompts"] == pytest.approx(0.5)  # the long prompt's 2 rollouts of 4
    short = len(tok.apply_chat_template(chat("Hi"), add_generation_prompt=True, return_dict=True)["input_ids"])
    assert row["num_tokens"] == 2 * (64 - 8) + 2 * short + 4 * row["completions/mean_length"]


# ---- 4. pad == EOS: only padding is masked, a row stops at its first EOS ---------------------------------------------
@pytest.fixture(scope="module")
def pad_is_eos_lm(tiny_lm):
    """A Llama whose tokenizer pads with its EOS, and whose chat template (ChatML) puts that EOS after every turn,
    as Llama-3.1's puts <|eot_id|> and SmolLM2's <|im_end|>. Its output row for EOS is a copy of one ordinary
    token's row, scaled up a little, so greedy decoding emits EOS wherever it would have emitted that token: some
    rows stop early, others run to max_new_tokens."""
    model, tok = llama_like(tiny_lm, pad_is_eos=True)
    eos = tok.eos_token_id
    enc = chat_inputs(tok, [chat(p, "Be brief.") for p in PROMPTS])
    free = decode(model, enc["input_ids"], enc["attention_mask"], Sampling(12, temperature=0), [], eos).tokens
    with torch.no_grad():
        model.lm_head.weight[eos] = model.lm_head.weight[int(free[0, 3])] * 1.05
    return model, tok


def first_eos_prefix(tokens: list[int], eos: int, tok) -> str:
    kept = tokens[: tokens.index(eos)] if eos in tokens else tokens
    return tok.decode(kept, skip_special_tokens=True).strip()


@pytest.mark.parametrize("engine", ENGINES, ids=["hf", "compiled"])
def test_pad_equal_to_eos_masks_only_padding_and_rows_stop_at_their_first_eos(pad_is_eos_lm, engine):
    model, tok = pad_is_eos_lm
    eos, greedy = tok.eos_token_id, Sampling(12, temperature=0)
    convs = [chat(p, "Be brief.") for p in PROMPTS]
    enc = chat_inputs(tok, convs)
    lengths = [len(chat_inputs(tok, [c])["input_ids"][0]) for c in convs]
    assert enc["attention_mask"].sum(-1).tolist() == lengths  # the mask counts tokens, not non-EOS ids
    for row, mask in zip(enc["input_ids"], enc["attention_mask"], strict=True):
        assert (row[mask.bool()] == eos).sum() == 2  # the EOS after the system and the user turn: attended
    free = decode(model, enc["input_ids"], enc["attention_mask"], greedy, [], eos).tokens.tolist()  # never stops
    stopped = [eos in r for r in free]
    assert any(stopped) and not all(stopped)
    batched = generate_chat(model, tok, convs, greedy, batch_size=5, engine=engine)
    assert batched == [first_eos_prefix(r, eos, tok) for r in free]
    assert batched == [generate_chat(model, tok, [c], greedy, batch_size=1, engine=engine)[0] for c in convs]


def test_the_tokenizers_eos_ends_a_row_on_both_engines_as_in_trl(pad_is_eos_lm):
    """A generation config that names no EOS, or only another one (a base model's <|end_of_text|> beside an instruct
    tokenizer's <|eot_id|>): generate() alone would run past the tokenizer's EOS while TRL's rollouts stop there
    (RLOOTrainer.eos_token_ids); both engines stop at it too."""
    model, tok = pad_is_eos_lm
    convs = [chat(p, "Be brief.") for p in PROMPTS]
    greedy = Sampling(12, temperature=0)
    expected = generate_chat(model, tok, convs, greedy)
    other = tok.convert_tokens_to_ids("<|pad|>")  # a special id this model never writes
    saved = copy.deepcopy(model.generation_config)
    try:
        for eos in (None, [other]):
            model.generation_config.eos_token_id = eos
            for engine in ENGINES:
                assert generate_chat(model, tok, convs, greedy, engine=engine) == expected, (eos, engine)
    finally:
        model.generation_config = saved


def test_trl_keeps_a_rollouts_eos_and_drops_what_follows_when_pad_is_eos(tmp_path, pad_is_eos_lm):
    """TRL's rollouts of a pad == EOS policy (near-greedy): a completion that stopped ends with its one EOS (kept,
    so the policy learns to stop), nothing after it; the policy prompt's inner EOS tokens stay real tokens."""
    model, tok = pad_is_eos_lm
    path = save(model, tok, tmp_path / "policy")
    seen = []

    def record(completions, completion_ids, **_):
        seen.extend(completion_ids)
        return [0.0] * len(completions)

    rows = [{"prompt": chat(p, "Be brief."), "x": p} for p in PROMPTS[:2]]
    trainer = tiny_rloo(tmp_path, path, rows, record, Sampling(12, temperature=0.05))
    trainer.train()
    eos = tok.eos_token_id
    assert any(ids[-1] == eos for ids in seen) and any(eos not in ids for ids in seen)
    for ids in seen:
        assert eos not in ids[:-1]  # at most one EOS, and only as the last token
        assert len(ids) == 12 or ids[-1] == eos
