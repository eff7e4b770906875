"""The theory lab's world through the real training path: the prompter is a tiny causal LM whose rewrite x′ is one
token; the frozen model and the reward are the world's tables behind the Responder/Reward interfaces; training is
alignpro.methods.rl (TRL RLOO, beta = λ) driven by alignpro.methods.alignpro.AlignProReward, the objects
``method=alignpro`` uses with only the models swapped. :func:`train_through_trl` compares the trained prompter with
Lemma 5.1's closed form (:mod:`alignpro.tools.theory_world`)."""

from __future__ import annotations

import shutil

import numpy as np

from alignpro.tools.theory_world import World, expected_reward, kl, objective, optimal_prompter, tv

EMPTY = ""  # what a special token (pad/eos) decodes to: the "empty rewrite"


class TableFrozen:
    """π_F as a table: answers the string s with y ∼ π_F(·|s) (seeded)."""

    def __init__(self, states: list[str], responses: list[str], pi_f: np.ndarray, seed: int = 0):
        self.index = {s: i for i, s in enumerate(states)}
        self.responses, self.pi_f = responses, pi_f
        self.rng = np.random.default_rng(seed)

    def answer(self, prompts: list[str], sampling=None, desc=None) -> list[str]:
        return [self.responses[self.rng.choice(len(self.responses), p=self.pi_f[self.index[p.strip()]])]
                for p in prompts]


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


def train_through_trl(lam: float, steps: int = 1600, k: int = 64, lr: float = 3e-3, seed: int = 0,
                      world_seed: int = 0, r_max: float = 2.0, max_grad_norm: float | None = None) -> dict:
    """Train the token-world prompter with alignpro's RLOO path; compare with Lemma 5.1's ρ* (per-prompt TV)."""
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignpro.config.schema import TrainerConfig
    from alignpro.methods.alignpro import AlignProReward
    from alignpro.methods.rl import build_trainer, trainer_args
    from alignpro.models.sampling import Sampling

    model_dir, w, states, token_state = token_world(seed=world_seed, r_max=r_max)
    prompts, responses = states[: w.n_x], [f"y{i}" for i in range(w.r.shape[1])]
    reward_fn = AlignProReward(TableFrozen(states, responses, w.pi_f, seed), TableReward(prompts, responses, w.r))
    tcfg = TrainerConfig(name="rloo", num_generations=k, prompts_per_step=w.n_x, max_steps=steps, learning_rate=lr,
                         lr_scheduler_type="linear", bf16=False,
                         # Clipping rescales large-norm gradients only, which biases the expected update away from
                         # ∇ of eq. 9; the optimiser's choice, not the objective's, so off here.
                         extra={"max_grad_norm": max_grad_norm or 1e9})
    out_dir = tempfile.mkdtemp(prefix="alignpro-theory-out-")
    args = trainer_args(tcfg, beta=lam, seed=seed, output_dir=out_dir, sampling=Sampling(1, 1.0, 1.0, 0), device="cpu")
    rows = [{"prompt": [{"role": "user", "content": x}], "x": x} for x in prompts] * 64
    trainer = build_trainer(tcfg, model_path=model_dir, model_dtype="float32", train_rows=rows, reward_fn=reward_fn,
                            args=args, callbacks=[])
    trainer.train()
    model = trainer.model.eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    rho = prompter_state_probs(model, tok, prompts, token_state, len(states))
    rho_ref = prompter_state_probs(AutoModelForCausalLM.from_pretrained(model_dir), tok, prompts, token_state,
                                   len(states))
    rho_star = optimal_prompter(w, lam)
    for d in (model_dir, out_dir):
        shutil.rmtree(d, ignore_errors=True)
    return {"lam": lam, "tv_per_prompt": tv(rho, rho_star).tolist(), "tv_ref_to_star": tv(rho_ref, rho_star).tolist(),
            "objective_trained": objective(w, rho, lam), "objective_star": objective(w, rho_star, lam),
            "reward_trained": float(w.p_x @ (rho * expected_reward(w)).sum(-1)),
            "kl_trained": float(w.p_x @ kl(rho, w.rho_ref)),
            "reward_star": float(w.p_x @ (rho_star * expected_reward(w)).sum(-1)),
            "kl_star": float(w.p_x @ kl(rho_star, w.rho_ref))}
