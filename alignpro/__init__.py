"""alignpro: reference implementation of Align-Pro (Trivedi et al., AAAI 2025).

Align a frozen LLM without touching its weights: RL-fine-tune a small prompter ρ(x'|x) to maximise
E[r(x, y)] - λ·KL(ρ || ρ_ref), y ~ π_F(·|x') (eq. 9, written out in ``alignpro/methods/alignpro.py``).
Entry point: ``python -m alignpro.train`` (Hydra). Labels D1–D12 in comments are the design decisions of
``docs/decisions.md``; the paper's equations, tables and prompts are in ``docs/paper.md``.
"""

from pathlib import Path

__version__ = "0.1.0"
# The Hydra config tree, absolute, so `python -m alignpro.train`, the `alignpro-train` console script and the other
# CLIs (alignpro.data, alignpro.report) find the same conf/ directory from any working directory. Defined
# here, in
# the import-free package root, so a CLI that only inspects data does not import torch to find it.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
