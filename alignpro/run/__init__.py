"""The run's bookkeeping, under every other layer: its directory and files, W&B tracking, errors and exit codes,
secrets, the finite-numbers guard and the stage clock. Imports no torch."""
