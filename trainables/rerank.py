"""Rerank a first-stage TREC run with a trained cross-encoder and write a new TREC run.

    python -m trainables.rerank --model CKPT_OR_ID --collection collection.tsv --queries queries.tsv \
        --run run.bm25.trec --out reranked.trec [--depth 100] [--batch-size 64] [--qrels qrels.txt]

--model takes a search checkpoint directory (the one holding model/ and state.pt: a search's best
checkpoint loads as it is), a saved model directory, or an HF id in the local cache. A search
checkpoint's run is interpolated with the first stage by the weight the trial chose on dev
(--first-stage-weight overrides it; 0: the model alone).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainables.errors import UsageError, exit_on_usage_error
from trainables.paths import check_output


def model_directory(model: str) -> tuple[Path, float]:
    """(the transformers directory behind --model, the first_stage_weight it chose on dev). A search
    checkpoint is checked whole first; a model directory, an HF id or a checkpoint that recorded no
    weight has weight 0: the model alone."""
    from trainables.checkpoint import MODEL_DIR, STATE_FILE, load_state
    from trainables.models import loadable_dir
    path, weight = Path(model).expanduser(), 0.0
    if (path / STATE_FILE).is_file() or (path / MODEL_DIR).is_dir():
        state = load_state(path)  # a corrupt or partial checkpoint fails here, naming its file
        weight = float(state.get("metrics", {}).get("first_stage_weight") or 0.0)
        path = path / MODEL_DIR
    return loadable_dir(str(path)), weight


def rerank_run(model_dir: Path, collection: dict, queries: dict, run: dict, depth: int, batch_size: int,
               max_length: int, show_progress: bool = True, bf16: bool = True) -> dict[str, dict[str, float]]:
    """{qid: {pid: model score}} for each query's top `depth` first-stage candidates."""
    import torch
    from tqdm import tqdm

    from trainables.evaluate import candidates, rerank_scores, to_run
    from trainables.models import load_reranker
    from trainables.precision import autocast_dtype
    missing = sorted({pid for hits in run.values() for pid in hits} - set(collection))
    if missing:
        raise UsageError(f"the run names passage {missing[0]!r}, which is not in the collection")
    qids = [qid for qid in run if qid in queries]
    if not qids:
        raise UsageError("no query of the run is in the queries file")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = autocast_dtype(bf16, device)
    tokenizer, model = load_reranker(model_dir)
    model.to(device)
    pairs = candidates(run, qids, depth)
    with tqdm(total=len(pairs), unit="pair", desc="rerank", disable=not show_progress, file=sys.stderr) as bar:
        scores = rerank_scores(model, tokenizer, pairs, queries, collection, max_length, batch_size, device,
                               autocast, progress=bar.update)
    return to_run(pairs, scores)


@exit_on_usage_error
def main(argv=None) -> dict | None:
    from trainables.data import read_collection, read_qrels, read_queries, read_run, write_run
    from trainables.evaluate import append_tail, interpolate, score_run
    parser = argparse.ArgumentParser(prog="python -m trainables.rerank", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint dir, model dir or cached HF id")
    parser.add_argument("--collection", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True, help="first-stage TREC run")
    parser.add_argument("--out", type=Path, required=True, help="reranked TREC run to write")
    parser.add_argument("--depth", type=int, default=100, help="candidates reranked per query")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256, help="tokens per (query, passage) pair")
    parser.add_argument("--first-stage-weight", type=float, default=None,
                        help="interpolate with the first-stage score (per-query min-max normalised); 0: model "
                             "only; default: the weight a search checkpoint chose on dev (0 for other models)")
    parser.add_argument("--fp32", action="store_true",
                        help="score in full fp32 (default: bf16 where the GPU or CPU computes it natively)")
    parser.add_argument("--qrels", type=Path, default=None, help="print metrics against these judgments")
    parser.add_argument("--relevance-level", type=int, default=2)
    args = parser.parse_args(argv)
    for name in ("depth", "batch_size", "max_length"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if args.first_stage_weight is not None and not 0 <= args.first_stage_weight <= 1:
        raise UsageError("--first-stage-weight must be in [0, 1]")
    check_output(args.out, "--out")
    # Everything is read and checked before the model loads, so a bad file costs no time.
    collection, queries, run = read_collection(args.collection), read_queries(args.queries), read_run(args.run)
    qrels = read_qrels(args.qrels) if args.qrels else None
    model_dir, chosen = model_directory(args.model)
    weight = args.first_stage_weight if args.first_stage_weight is not None else chosen
    source = "--first-stage-weight" if args.first_stage_weight is not None else "the checkpoint's, chosen on dev"
    print(f"first-stage weight {weight:g} ({source})", file=sys.stderr)
    reranked = rerank_run(model_dir, collection, queries, run, args.depth, args.batch_size, args.max_length,
                          bf16=not args.fp32)
    if weight:
        reranked = interpolate(run, reranked, weight)
    reranked = append_tail(run, reranked, args.depth)  # the rest keeps its first-stage order: same recall
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_run(reranked, args.out, tag=f"rerank-{model_dir.name}")
    print(f"wrote {args.out} ({len(reranked)} queries, depth {args.depth})", file=sys.stderr)
    if qrels is not None:
        scores = score_run(reranked, qrels, args.relevance_level)
        first = score_run({q: run[q] for q in reranked}, qrels, args.relevance_level)
        for name in ("ndcg_at_10", "map", "mrr_at_10", "recall_at_100"):
            print(f"{name:<14} reranked {scores[name]:.4f}   first stage {first[name]:.4f}")
        return scores
    return None


if __name__ == "__main__":
    main()
