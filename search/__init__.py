"""How trials are run: the CLI, the Tune function trainable, tracking, the BM25 first stage."""
