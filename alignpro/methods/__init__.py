"""The arms of the comparison: what every arm shares (``base``), the registry and factory (``registry``), the two
that train nothing (``baselines``), Align-Pro's eq. 9 (``alignpro``) and its logged value (``objective``), the RLHF
oracle (``oracle``), the rollout core x → x′ → y → r(x, y) (``rollout``), the SFT warm start (``sft``) and the TRL
adapter they share (``rl``)."""
