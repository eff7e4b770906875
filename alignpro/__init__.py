"""alignpro: reference implementation of Align-Pro (Trivedi et al., AAAI 2025).

Align a frozen LLM without touching its weights: RL-fine-tune a small prompter ρ(x'|x) to maximise
E[r(x, y)] - λ·KL(ρ || ρ_ref), y ~ π_F(·|x'). Entry point: ``python -m alignpro.train`` (Hydra).
"""

__version__ = "0.1.0"
