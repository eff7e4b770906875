"""The theory lab's world through the real training path: the prompter is a tiny causal LM whose rewrite x′ is one
token; the frozen model and the reward are the world's tables behind the Responder/Reward interfaces; training is
alignpro.methods.rl (TRL RLOO or GRPO, beta = λ) driven by alignpro.methods.alignpro.AlignProReward with eq. 9's
value logged by alignpro.methods.objective.Objective, the objects ``method=alignpro`` uses with only the models
swapped. :func:`train_through_trl` compares the trained prompter with Lemma 5.1's closed form and with GRPO's own
fixed point (:mod:`alignpro.tools.theory_world`), and the logged objective with the exact one;
:func:`train_many` runs several trainings in parallel processes, one CPU thread each."""

from __future__ import annotations

import shutil
import time

import numpy as np

from alignpro.tools.theory_world import (
    World,
    expected_reward,
    grpo_fixed_point,
    kl,
    objective,
    optimal_prompter,
    tv,
)

EMPTY = ""  # what a special token (pad/eos) decodes to: the "empty rewrite"


class TableFrozen:
    """π_F as a table: answers the string s with y ∼ π_F(·|s) (seeded)."""

    def __init__(self, states: list[str], responses: list[str], pi_f: np.ndarray, seed: int = 0):
        self.index = {s: i for i, s in enumerate(states)}
        self.responses, self.pi_f = responses, pi_f
        self.rng = np.random.default_rng(seed)
        cdf = pi_f.cumsum(-1)
        self.cdf = cdf / cdf[:, -1:]  # as Generator.choice normalises it

    def answer(self, prompts: list[str], sampling=None, desc=None) -> list[str]:
        # Generator.choice(n, p=row) one prompt at a time, in one call: one uniform per prompt from the same stream,
        # then searchsorted(cdf, u, side="right"), i.e. the count of cdf entries <= u. The same draws, 150x cheaper.
        cdf = self.cdf[[self.index[p.strip()] for p in prompts]]
        picks = (cdf <= self.rng.random(len(prompts))[:, None]).sum(-1)
        return [self.responses[i] for i in picks]


class TableReward:
    """r(x, y) as a table."""

    def __init__(self, prompts: list[str], responses: list[str], r: np.ndarray):
        self.x_index = {x: i for i, x in enumerate(prompts)}
        self.y_index = {y: i for i, y in enumerate(responses)}
        self.r = r

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        return [float(self.r[self.x_index[x], self.y_index[y]]) for x, y in zip(prompts, responses, strict=True)]


def token_world(n_x: int = 3, n_rewrites: int = 6, n_y: int = 4, seed: int = 0, hidden: int = 32,
                r_max: float = 2.0):
    """A tiny LM prompter over the vocabulary {pad, eos, p0.., a0..} saved to a folder, and a World whose prompt
    space S is what its one-token rewrites decode to: [p0.., a0.., EMPTY]. ρ_ref is the LM's exact next-token
    distribution (grouped by decoded string). Returns (model_dir, world, states, token_state)."""
    import tempfile

    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    prompts, rewrites = [f"p{i}" for i in range(n_x)], [f"a{j}" for j in range(n_rewrites)]
    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", *prompts, *rewrites])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                      initializer_range=0.5, pad_token_id=0, eos_token_id=1, bos_token_id=None,
                      tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 1
    model_dir = tempfile.mkdtemp(prefix="alignpro-theory-")
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)

    states = [*prompts, *rewrites, EMPTY]
    token_state = np.array([states.index(tok.decode([i], skip_special_tokens=True)) for i in range(len(vocab))])
    rng = np.random.default_rng(seed + 1)
    pi_f = rng.dirichlet(np.full(n_y, 0.5), size=len(states))
    world = World(p_x=np.full(n_x, 1 / n_x), rho_ref=prompter_state_probs(model, tok, prompts, token_state,
                                                                            len(states)),
                  pi_f=pi_f, r=rng.uniform(0, r_max, size=(n_x, n_y)), r_max=r_max)
    return model_dir, world, states, token_state


def prompter_state_probs(model, tok, prompts: list[str], token_state: np.ndarray, n_states: int) -> np.ndarray:
    """ρ(s|x): the LM's exact next-token distribution after each prompt's chat text, summed per decoded string."""
    import torch

    rows = []
    with torch.no_grad():
        for x in prompts:
            text = tok.apply_chat_template([[{"role": "user", "content": x}]], tokenize=False,
                                           add_generation_prompt=True)[0]
            ids = tok(text, return_tensors="pt")["input_ids"]
            p_tok = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1).numpy()
            rows.append(np.bincount(token_state, weights=p_tok, minlength=n_states))
    return np.array(rows)


LOGGED = ("objective", "reward", "kl", "kl_seq", "completions/mean_length")  # per-step values train_through_trl keeps


def _log_recorder(rows: list[dict], probe, start: int):
    """A TrainerCallback appending each training step's :data:`LOGGED` values to ``rows``, and from step ``start``
    on the exact ρ(x′|x) that the step samples from (``probe(model)``, taken at the step's beginning, before TRL
    generates its rewrites). It runs after :class:`~alignpro.methods.objective.Objective`, which adds ``objective``
    and ``kl_seq`` to the shared ``logs`` (``state.log_history`` holds a copy taken before any callback ran)."""
    from transformers import TrainerCallback

    class LogRecorder(TrainerCallback):
        def __init__(self):
            self.rho = None

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            self.rho = probe(model) if state.global_step >= start else None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "objective" in logs:
                rows.append({**{k: float(logs[k]) for k in LOGGED}, "rho": self.rho})

    return LogRecorder()


def _recording_reward(frozen: TableFrozen, reward: TableReward, calls: list[list[str]]):
    """alignpro's AlignProReward, also noting the prompts x of each call (one call per training step): a step's
    prompts are drawn from the shuffled train rows, so the exact value its logged numbers estimate is the average of
    the per-prompt values over *its* prompts, not over P(x)."""
    from alignpro.methods.alignpro import AlignProReward

    class RecordingReward(AlignProReward):
        def __call__(self, prompts, completions, x, **kwargs):
            calls.append(list(x))
            return super().__call__(prompts, completions, x, **kwargs)

    return RecordingReward(frozen, reward)


def fixed_point(w: World, lam: float, trainer: str, k: int, extra: dict | None = None) -> np.ndarray:
    """Where the trainer should stop: Lemma 5.1's ρ*(λ) for RLOO (KL in the reward), GRPO's
    :func:`~alignpro.tools.theory_world.grpo_fixed_point` (``use_bias_correction_kl`` as in ``extra``, TRL's
    default True) for GRPO."""
    if trainer == "rloo":
        return optimal_prompter(w, lam)
    return grpo_fixed_point(w, lam, k, bias_correction=bool((extra or {}).get("use_bias_correction_kl", True)))


def train_through_trl(lam: float, steps: int = 1600, k: int = 64, lr: float = 3e-3, seed: int = 0,
                      world_seed: int = 0, r_max: float = 2.0, max_grad_norm: float | None = None,
                      trainer: str = "rloo", extra: dict | None = None, tail: float = 0.25) -> dict:
    """Train the token-world prompter with alignpro's ``trainer`` path (``rloo`` or ``grpo``, configured as
    conf/trainer/*.yaml does, through alignpro.methods.rl.trainer_args; ``extra`` goes to TRL verbatim) with
    beta = λ and eq. 9's value logged by alignpro's Objective callback. Returns the trained prompter's per-prompt TV
    from Lemma 5.1's ρ*(λ), from the trainer's predicted :func:`fixed_point` and from ρ_G (GRPO without its KL
    correction), eq. 9's terms for each, and under ``logged`` the last ``tail`` of the steps: the mean logged
    ``objective``, ``reward``, ``penalty`` (= reward − objective, the logged λ·kl_seq) against their exact values
    for the trained prompter on each step's own prompts (``*_exact``), with the standard error of the per-step
    differences (``*_se``), and the range of ``completions/mean_length``; ``seconds`` and ``cpu_seconds`` time the
    training itself."""
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignpro.config.schema import TrainerConfig
    from alignpro.methods.objective import Objective
    from alignpro.methods.rl import build_trainer, trainer_args
    from alignpro.models.sampling import Sampling

    if trainer not in ("rloo", "grpo"):
        raise ValueError(f"trainer must be rloo or grpo, got {trainer!r}")
    model_dir, w, states, token_state = token_world(seed=world_seed, r_max=r_max)
    prompts, responses = states[: w.n_x], [f"y{i}" for i in range(w.r.shape[1])]
    calls: list[list[str]] = []
    reward_fn = _recording_reward(TableFrozen(states, responses, w.pi_f, seed), TableReward(prompts, responses, w.r),
                                  calls)
    tcfg = TrainerConfig(name=trainer, num_generations=k, prompts_per_step=w.n_x, max_steps=steps, learning_rate=lr,
                         lr_scheduler_type="linear", bf16=False,
                         # Clipping rescales large-norm gradients only, which biases the expected update away from
                         # ∇ of eq. 9; the optimiser's choice, not the objective's, so off here.
                         extra={"max_grad_norm": max_grad_norm or 1e9, **(extra or {})},
                         save_steps=0)  # no checkpoints: nothing resumes a theory run, and its folder is deleted
    out_dir = tempfile.mkdtemp(prefix="alignpro-theory-out-")
    args = trainer_args(tcfg, beta=lam, seed=seed, output_dir=out_dir, sampling=Sampling(1, 1.0, 1.0, 0), device="cpu")
    rows = [{"prompt": [{"role": "user", "content": x}], "x": x} for x in prompts] * 64
    logged: list[dict] = []
    tok = AutoTokenizer.from_pretrained(model_dir)

    def probe(model):
        return prompter_state_probs(model, tok, prompts, token_state, len(states))

    n_tail = max(2, int(round(tail * steps)))
    # As alignpro.methods.alignpro does: Objective first, so every later callback sees eq. 9's logged value.
    run = build_trainer(tcfg, model_path=model_dir, model_dtype="float32", train_rows=rows, reward_fn=reward_fn,
                        args=args, callbacks=[_log_recorder(logged, probe, steps - n_tail)],
                        first_callbacks=[Objective(lam)])
    clock, cpu = time.perf_counter(), time.process_time()
    run.train()
    seconds, cpu_seconds = time.perf_counter() - clock, time.process_time() - cpu
    rho = probe(run.model.eval())
    rho_ref = prompter_state_probs(AutoModelForCausalLM.from_pretrained(model_dir), tok, prompts, token_state,
                                   len(states))
    for d in (model_dir, out_dir):
        shutil.rmtree(d, ignore_errors=True)
    rho_star, rho_fixed = optimal_prompter(w, lam), fixed_point(w, lam, trainer, k, extra)
    rho_swapped = grpo_fixed_point(w, lam, k, bias_correction=False)
    if len(calls) != len(logged):
        raise RuntimeError(f"{len(calls)} reward calls but {len(logged)} logged steps")

    rewrite_reward = expected_reward(w)  # Lemma 5.1's R(x, x′)

    def reward_of(p):
        return float(w.p_x @ (p * rewrite_reward).sum(-1))

    def kl_of(p):
        return float(w.p_x @ kl(p, w.rho_ref))

    # Each step's exact eq. 9 terms: those of the prompter it sampled from, averaged over its own prompts.
    index = {x: i for i, x in enumerate(prompts)}
    tail_rows = logged[-n_tail:]
    exact: dict = {"reward": [], "penalty": []}
    for row, xs in zip(tail_rows, calls[-n_tail:], strict=True):
        i = np.array([index[x] for x in xs])
        exact["reward"].append((row["rho"] * rewrite_reward).sum(-1)[i].mean())
        exact["penalty"].append(lam * kl(row["rho"], w.rho_ref)[i].mean())
    exact = {key: np.array(v) for key, v in exact.items()}
    exact["objective"] = exact["reward"] - exact["penalty"]
    got = {key: np.array([row[key] for row in tail_rows]) for key in LOGGED}
    got["penalty"] = got["reward"] - got["objective"]
    summary: dict = {"steps": n_tail, "mean_length_min": float(got["completions/mean_length"].min()),
                     "mean_length_max": float(got["completions/mean_length"].max())}
    for key in ("objective", "reward", "penalty"):
        diff = got[key] - exact[key]
        summary.update({key: float(got[key].mean()), f"{key}_exact": float(exact[key].mean()),
                        f"{key}_se": float(diff.std(ddof=1) / np.sqrt(n_tail))})
    return {"lam": lam, "trainer": trainer, "k": k, "steps": steps, "extra": extra or {}, "rho": rho.tolist(),
            "seconds": seconds, "cpu_seconds": cpu_seconds,
            "tv_per_prompt": tv(rho, rho_star).tolist(), "tv_ref_to_star": tv(rho_ref, rho_star).tolist(),
            "tv_to_fixed_point": tv(rho, rho_fixed).tolist(), "tv_to_swapped": tv(rho, rho_swapped).tolist(),
            "tv_star_to_swapped": tv(rho_star, rho_swapped).tolist(),
            "objective_trained": objective(w, rho, lam), "objective_star": objective(w, rho_star, lam),
            "objective_fixed_point": objective(w, rho_fixed, lam),
            "reward_trained": reward_of(rho), "kl_trained": kl_of(rho),
            "reward_star": reward_of(rho_star), "kl_star": kl_of(rho_star),
            "reward_fixed_point": reward_of(rho_fixed), "kl_fixed_point": kl_of(rho_fixed),
            "reward_swapped": reward_of(rho_swapped), "kl_swapped": kl_of(rho_swapped),
            "logged": summary}


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _train(kwargs: dict) -> dict:
    return train_through_trl(**kwargs)


def train_many(runs: list[dict], workers: int = 2) -> list[dict]:
    """:func:`train_through_trl` for each keyword dict in ``runs``, ``workers`` at a time in fresh (spawned)
    processes with one torch thread each: the runs are independent and each is too small to use two cores well.
    Results come back in the order of ``runs``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if workers <= 1 or len(runs) <= 1:
        return [_train(r) for r in runs]
    with ProcessPoolExecutor(max_workers=min(workers, len(runs)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread) as pool:
        return list(pool.map(_train, runs))
