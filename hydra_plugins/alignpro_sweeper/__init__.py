"""Hydra plugin: alignpro's product sweeper, Hydra's basic sweeper that runs each distinct job once."""
