"""Reports from finished runs; each reads run dirs only (``config.yaml``, ``metrics.json``, ``eval_samples.jsonl``,
``train_log.jsonl``; alignpro/run/directory.py), never live objects.

| module          | job                                                                          |
|-----------------|------------------------------------------------------------------------------|
| ``runs``        | read a sweep's jobs back; the keys it varied; rewards pooled over seeds      |
| ``ablation``    | group by the varied keys: table, reward-vs-factor and reward–KL plots        |
| ``paper``       | the paper's Table 1 and Figures 2–3 as rows; the headline shape              |
| ``comparison``  | the arms per grid cell beside the paper: Table 1, Figures 2–3, paired diffs  |
| ``figures``     | the grouped bar charts of Figures 2–3                                        |
| ``wandb_log``   | the report's own W&B run                                                     |
| ``cli``         | ``python -m alignpro.report``                                                |
"""
