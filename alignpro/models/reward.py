"""Reward models r(x, y) behind one interface, ``score(prompts, responses) -> list[float]``, and the ``reward``
group's factory. Two kinds (``reward.kind``):

* ``bt_encoder`` (``reward=bt_minilm``, ``reward=tiny``): a Bradley–Terry reward on a frozen sentence encoder,
  trained by the suite on the train split's preference pairs with the paper's eq. 1 (alignpro/models/reward_bt.py);
* ``hf_classifier`` (``reward=rm_gemma_2b``, the paper's RM, or ``reward=hf_classifier``): a pretrained
  sequence-classification RM called the way its model card does (alignpro/models/reward_hf.py).

Which prompt the reward sees, x (theory, default) or x′ (ablation, ``reward.prompt=rewritten``), is the reward
function's choice (D5; alignpro/methods/alignpro.py), not the reward model's.
"""

from __future__ import annotations

from typing import Protocol

from alignpro.config.schema import RewardConfig


class Reward(Protocol):
    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """r(prompt_i, response_i) for each i."""


def build_reward(cfg: RewardConfig, train: list[dict], heldout: list[dict], device: str = "cpu") -> Reward:
    """Factory for the ``reward`` config group (``reward.kind`` is checked by alignpro.config.validate)."""
    if cfg.kind == "bt_encoder":
        from alignpro.models.reward_bt import build_bt_reward

        return build_bt_reward(cfg, train, heldout, device)
    from alignpro.models.reward_hf import build_hf_classifier_reward

    return build_hf_classifier_reward(cfg, device)
