"""The typed config: one dataclass per Hydra group (``schema``), the cross-group checks run before anything loads
(``validate``) and the sweep's preflight and distinct-job grid (``preflight``). Imports no torch."""
