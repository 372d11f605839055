"""How a trial scores itself each epoch: the dev (and, for seed reruns, test) candidates are
reranked in shares over the workers, gathered, optionally interpolated with the first-stage
score, and scored with TREC semantics. Every rank ends with the same numbers."""
from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from trainables.config import TrainConfig
from trainables.data import held_out_queries
from trainables.evaluate import (candidates, interpolate, mean_metrics, per_query_metrics, relevance_level,
                                 rerank_scores, to_run)

# Interpolation weights tried on dev when first_stage_weight is None ("choose on dev").
WEIGHT_GRID = tuple(i / 10 for i in range(10))
# Also reported for the model alone (model_<name>): the final score may be mostly the first stage's.
MODEL_METRICS = ("ndcg_at_10", "map", "mrr_at_10")


def gathered_run(model, tokenizer, data, pairs, cfg: TrainConfig, device, autocast_dtype, rank: int,
                 world_size: int) -> dict[str, dict[str, float]]:
    """Model scores for every pair: each rank scores pairs[rank::world_size], then all gather."""
    mine = pairs[rank::world_size]
    scores = rerank_scores(model, tokenizer, mine, data.queries, data.collection, cfg.max_length,
                           cfg.eval_batch_size, device, autocast_dtype)
    shares = [(mine, scores)]
    if world_size > 1:
        shares = [None] * world_size
        dist.all_gather_object(shares, (mine, scores))  # workers must agree: every rank takes part
    run: dict[str, dict[str, float]] = {}
    for share_pairs, share_scores in shares:
        for qid, scored in to_run(share_pairs, share_scores).items():
            run.setdefault(qid, {}).update(scored)
    return run


def per_query_at(run, data, cfg: TrainConfig, weight: float) -> dict:
    mixed = interpolate(data.run, run, weight) if weight else run
    return per_query_metrics(mixed, data.qrels, relevance_level(data.qrels, cfg.positive_level))


def choose_weight(run, data, cfg: TrainConfig) -> float:
    """cfg.first_stage_weight, or when it is None the grid weight with the best dev nDCG@10
    (ties go to the smaller weight: trust the model when the first stage adds nothing)."""
    if cfg.first_stage_weight is not None:
        return cfg.first_stage_weight
    return max(WEIGHT_GRID, key=lambda w: (mean_metrics(per_query_at(run, data, cfg, w))["ndcg_at_10"], -w))


def evaluate_dev(model, tokenizer, data, dev_pairs, cfg: TrainConfig, device, autocast_dtype, rank: int,
                 world_size: int) -> dict:
    """Dev metrics of the final score (interpolated with the weight chosen on dev), plus the model
    alone's as model_<metric>, so a first stage doing the work is visible."""
    run = gathered_run(model, tokenizer, data, dev_pairs, cfg, device, autocast_dtype, rank, world_size)
    weight = choose_weight(run, data, cfg)
    return dev_metrics(run, data, cfg, weight)


def dev_metrics(run, data, cfg: TrainConfig, weight: float) -> dict:
    final = mean_metrics(per_query_at(run, data, cfg, weight))
    alone = final if not weight else mean_metrics(per_query_at(run, data, cfg, 0.0))
    return {**final, **{f"model_{k}": v for k, v in alone.items() if k in MODEL_METRICS},
            "first_stage_weight": weight}


def evaluate_test(model, tokenizer, data, cfg: TrainConfig, device, autocast_dtype, rank: int, world_size: int,
                  weight: float) -> dict:
    """Per-query scores on the held-out test fold, with the weight chosen on dev."""
    test_qids = held_out_queries(data, cfg.dev_fraction, cfg.split_seed, cfg.folds, cfg.test_fold)
    pairs = candidates(data.run, test_qids, cfg.rerank_depth)
    run = gathered_run(model, tokenizer, data, pairs, cfg, device, autocast_dtype, rank, world_size)
    return per_query_at(run, data, cfg, weight)


def load_final(checkpoint_dir, cfg: TrainConfig):
    """(model on this process's device, tokenizer, device, the first_stage_weight it chose on dev)."""
    import torch

    from trainables.checkpoint import MODEL_DIR, load_state
    from trainables.errors import UsageError
    from trainables.models import load_reranker
    weight = load_state(checkpoint_dir)["metrics"].get("first_stage_weight", cfg.first_stage_weight)
    if weight is None:
        raise UsageError(f"{checkpoint_dir}: the checkpoint records no first_stage_weight chosen on dev")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer, model = load_reranker(Path(checkpoint_dir) / MODEL_DIR, cfg.attn_implementation)
    model.to(device)
    return model, tokenizer, device, weight


def score_checkpoint(checkpoint_dir, config: dict) -> dict:
    """Per-query test-fold scores of a trial's saved final checkpoint, with the interpolation weight
    it chose on dev: what a rerun of the same config and seed would score, without training again."""
    from trainables.data import three_way_split
    from trainables.precision import autocast_dtype
    from trainables.prepared import open_prepared
    cfg = TrainConfig.from_dict(config)
    model, tokenizer, device, weight = load_final(checkpoint_dir, cfg)
    prepared = open_prepared(cfg.data_dir, cfg.run_file, cfg.prepared, cfg.eval_runs)
    test = three_way_split(prepared.view([]), cfg.dev_fraction, cfg.split_seed, cfg.folds, cfg.test_fold)[2]
    data = prepared.view(test)
    return evaluate_test(model, tokenizer, data, cfg, device, autocast_dtype(cfg.bf16, device), 0, 1, weight)


def score_eval_sets(checkpoint_dir, config: dict, outputs: dict[str, str]) -> dict:
    """{set: per-query scores} of a final checkpoint on named eval sets, with the weight it chose on
    dev; each set's reranked run is written to outputs[set] as a TREC file. Below the reranked
    top rerank_depth the first-stage ranking follows in its own order (recall at 1000 is the first
    stage's, as trainables.rerank writes it), and scores are rounded as the file stores them, so the
    metrics are those of the file."""
    from trainables.data import write_run
    from trainables.evaluate import append_tail
    from trainables.precision import autocast_dtype
    from trainables.prepared import open_prepared
    cfg = TrainConfig.from_dict(config)
    model, tokenizer, device, weight = load_final(checkpoint_dir, cfg)
    prepared = open_prepared(cfg.data_dir, cfg.run_file, cfg.prepared, cfg.eval_runs)
    scores = {}
    for name, path in outputs.items():
        qids = prepared.eval_set(name).usable_qids()
        data = prepared.view(qids, eval_set=name)
        pairs = candidates(data.run, qids, cfg.rerank_depth)
        run = gathered_run(model, tokenizer, data, pairs, cfg, device, autocast_dtype(cfg.bf16, device), 0, 1)
        full = append_tail(data.run, interpolate(data.run, run, weight) if weight else run, cfg.rerank_depth)
        full = {q: {p: round(v, 6) for p, v in scored.items()} for q, scored in full.items()}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_run(full, path, tag=f"rerank-{Path(checkpoint_dir).name}")
        scores[name] = per_query_metrics(full, data.qrels, relevance_level(data.qrels, cfg.positive_level))
    return scores
