"""The arms of the comparison: the registry (``registry``), Align-Pro's eq. 9 (``alignpro``), the RLHF oracle
(``oracle``), the SFT warm start (``sft``) and the TRL adapter they share (``rl``)."""
