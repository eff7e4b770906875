"""Preference datasets: the shipped sets (``*_prefs.jsonl`` with their data cards, in this folder), local files and
hub datasets, read (``sources``), adapted to one record layout (``adapters``) and split into train and held-out
prompts (``preferences``). ``python -m alignpro.data`` prints a split's counts and first records."""

from pathlib import Path

from alignpro.run.errors import BadInput

DATA_DIR = Path(__file__).parent  # the shipped preference sets (dataset.asset names a file here)
EMBEDDED_PREFS = DATA_DIR / "embedded_prefs.jsonl"


class DataError(BadInput, ValueError):
    """The dataset config or the data itself cannot be used; the message names the bad value."""
