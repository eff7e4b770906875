"""What a run loads: offline assets and the cache, the generation engine, the prompter ρ, the frozen model π_F
(local or behind an OpenAI-compatible API) and the reward r(x, y)."""
