"""Preference datasets: the shipped sets (``*_prefs.jsonl`` with their data cards), local files and hub datasets,
adapted to one record layout and split into train and held-out prompts (``preferences``).
``python -m alignpro.data`` prints a split's first records."""
