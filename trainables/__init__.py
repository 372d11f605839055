"""How one trial trains: config, data, optimisers, the per-worker loop, evaluation, checkpoints."""
