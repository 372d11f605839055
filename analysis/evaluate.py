"""Score a TREC run against qrels with official TREC semantics; the same function scores trials.

    python -m analysis.evaluate --run RUN --qrels QRELS [--relevance-level 2] [--complete] [--json]

nDCG@10 uses graded gains; MAP, MRR@10 and recall count rel >= --relevance-level (2 on TREC DL).
MRR@10 cuts each ranking at 10 first; ties are broken by docid descending, as trec_eval does.
Only queries with both judgments and results count, unless --complete (every judged query counts,
missing ones score 0: trec_eval -c).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainables.data import read_qrels, read_run
from trainables.errors import UsageError, exit_on_usage_error
from trainables.evaluate import METRICS, score_run


def evaluate_files(run_path: Path, qrels_path: Path, relevance_level: int = 2,
                   complete: bool = False) -> dict[str, float]:
    run, qrels = read_run(run_path), read_qrels(qrels_path)
    if not set(run) & set(qrels):
        raise UsageError(f"{run_path}: no query of the run has judgments in {qrels_path}")
    return score_run(run, qrels, relevance_level, complete)


@exit_on_usage_error
def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m analysis.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="TREC run: qid Q0 pid rank score tag")
    parser.add_argument("--qrels", type=Path, required=True, help="qrels: qid 0 pid rel")
    parser.add_argument("--relevance-level", type=int, default=2,
                        help="binary metrics count rel >= this (default 2, the TREC DL convention)")
    parser.add_argument("--complete", action="store_true", help="average over every judged query (trec_eval -c)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.relevance_level < 1:
        raise UsageError("--relevance-level must be >= 1")
    scores = evaluate_files(args.run, args.qrels, args.relevance_level, args.complete)
    if args.json:
        print(json.dumps({name: scores[name] for name in (*METRICS, "num_queries")}))
    else:
        for name in (*METRICS, "num_queries"):
            value = scores[name]
            print(f"{name:<16}{value:.4f}" if name != "num_queries" else f"{name:<16}{value}")
    return scores


if __name__ == "__main__":
    main()
    sys.exit(0)
