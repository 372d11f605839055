"""TREC DL 2020, query-level k-fold cross-validation: BM25 vs our tuned reranker vs
sentence-transformers' CrossEncoderTrainer at its defaults, on the same folds and budget.

    python benchmarks/dl20_kfold.py [--folds 3] [--trials 2] [--epochs 2] [--seeds 1]

For each fold f (held out as test queries, never trained on or used to choose anything):
  ours:   `search.run --space minilm --compare-optimizers --folds K --test-fold f` (TPE + ASHA per optimizer on
          the other folds' train/dev split; lr, decay, schedule, warmup searched; BM25 hard negatives; the
          interpolation weight with the BM25 score chosen on dev each epoch), then `search.rerun` retrains each
          optimizer's best config and scores the test fold. "ours" is the optimizer whose best trial scored
          higher on dev; both optimizers' test scores are shown too.
  theirs: CrossEncoder(packaged MiniLM, num_labels=1) + CrossEncoderTrainer with default arguments and
          BinaryCrossEntropyLoss, trained on exactly our training pairs of that fold for the same epochs,
          reranking the same test candidates.
Per-query test scores of all folds are pooled (each query is in exactly one test fold) and compared
with paired t-tests. Prints a table and writes benchmarks/results/dl20_kfold.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, machine  # noqa: E402  (sets the environment first)

DL20 = ROOT.parent / "shared" / "data" / "trec-dl-2020-bm25-top100"
METRICS = ("ndcg_at_10", "map", "mrr_at_10")


def fold_settings(args) -> list[str]:
    return ["--set", f"max_length={args.max_length}", "--set", f"batch_size={args.batch_size}", "--set",
            "first_stage_weight=null", "--set", "negatives_per_query=8", "--set", "rerank_depth=100"]


def run_ours(args, fold: int) -> None:
    command = [sys.executable, "-m", "search.run", "--space", "minilm", "--data", str(args.data), "--compare-optimizers",
               "--folds", str(args.folds), "--test-fold", str(fold), "--trials", str(args.trials), "--epochs",
               str(args.epochs), "--experiment", args.experiment, "--storage", str(args.storage), *fold_settings(args)]
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def fold_config(args, fold: int) -> dict:
    from trainables.models import PACKAGED_MINILM, require
    return {"model": str(require(PACKAGED_MINILM)), "data_dir": str(args.data), "folds": args.folds,
            "test_fold": fold, "max_length": args.max_length, "batch_size": args.batch_size, "epochs": args.epochs,
            "negatives_per_query": 8, "rerank_depth": 100, "num_threads": 2}


def run_theirs(args, fold: int, out_dir: Path) -> dict[str, dict[str, float]]:
    """Per-query test scores of a CrossEncoderTrainer model at its defaults, on our pairs of the fold."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from trainables.config import TrainConfig
    from trainables.data import held_out_queries
    from trainables.evaluate import candidates, per_query_metrics, to_run
    from trainables.loop import load_trial_data
    cfg = TrainConfig.from_dict(fold_config(args, fold))
    torch.set_num_threads(2)
    trial = load_trial_data(cfg)
    data, pairs = trial.eval, trial.id_pairs()
    train = Dataset.from_dict({"query": [data.queries[p.qid] for p in pairs],
                               "passage": [data.collection[p.pid] for p in pairs],
                               "label": [p.label for p in pairs]})
    model = CrossEncoder(cfg.model, num_labels=1)
    trainer = CrossEncoderTrainer(model=model, train_dataset=train, loss=BinaryCrossEntropyLoss(model),
                                  args=CrossEncoderTrainingArguments(output_dir=str(out_dir), num_train_epochs=cfg.epochs,
                                                                     report_to="none", save_strategy="no", seed=0))
    trainer.train()
    test = candidates(data.run, held_out_queries(data, cfg.dev_fraction, cfg.split_seed, cfg.folds, cfg.test_fold),
                      cfg.rerank_depth)
    scores = model.predict([(data.queries[q], data.collection[p]) for q, p in test], batch_size=64,
                           show_progress_bar=False)
    return per_query_metrics(to_run(test, [float(s) for s in scores]), data.qrels, cfg.positive_level)


def bm25_per_query(args, fold: int) -> dict[str, dict[str, float]]:
    from trainables.config import TrainConfig
    from trainables.data import RetrievalData, held_out_queries
    from trainables.evaluate import candidates, per_query_metrics, to_run
    cfg = TrainConfig.from_dict(fold_config(args, fold))
    data = RetrievalData.load(cfg.data_dir)
    test = candidates(data.run, held_out_queries(data, cfg.dev_fraction, cfg.split_seed, cfg.folds, fold), 100)
    return per_query_metrics(to_run(test, [data.run[q][p] for q, p in test]), data.qrels, cfg.positive_level)


def ours_per_query(args) -> tuple[dict, dict, dict]:
    """(chosen on dev, adamw, lion): pooled per-query test scores of the seed-0 reruns."""
    from analysis.runs import load_experiment
    from analysis.summary import best_final_trial
    from search.tracking import default_uri
    experiment = load_experiment(default_uri(args.storage.resolve()), args.experiment)
    chosen, by_optimizer = {}, {"adamw": {}, "lion": {}}
    for fold in range(args.folds):
        searches = [s for s in experiment.searches if s.params.get("test_fold") == str(fold)]
        dev, test = {}, {}
        for search in searches:
            best = best_final_trial([t for t in search.trials if t.status == "FINISHED"], search.max_epochs)
            reruns = [r for r in search.reruns if r.seed == "0" and r.status == "FINISHED" and r.per_query]
            if best and reruns:
                dev[search.optimizer], test[search.optimizer] = best.final("ndcg_at_10"), reruns[0].per_query
        for optimizer, per_query in test.items():
            by_optimizer[optimizer].update(per_query)
        chosen.update(test[max(dev, key=dev.get)])  # the optimizer whose best trial did better on dev
    return chosen, by_optimizer["adamw"], by_optimizer["lion"]


def mean(per_query: dict, metric: str) -> float:
    return sum(q[metric] for q in per_query.values()) / len(per_query)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DL20)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=2, help="trials per optimizer per fold")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--experiment", default="dl20-minilm-cv")
    parser.add_argument("--storage", type=Path, default=ROOT / "benchmarks" / "results" / "dl20-cv")
    parser.add_argument("--skip-ours", action="store_true", help="reuse the searches and reruns in --storage")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dl20_kfold.json")
    args = parser.parse_args()
    from scipy.stats import ttest_rel
    started = time.time()
    if not args.skip_ours:
        for fold in range(args.folds):
            print(f"fold {fold}: search (both optimizers)", file=sys.stderr, flush=True)
            run_ours(args, fold)
        print("seed reruns on the test folds", file=sys.stderr, flush=True)
        # Seed 0 is each best trial's own checkpoint; --seeds counts it, search.rerun's --seeds does not.
        subprocess.run([sys.executable, "-m", "search.rerun", "--experiment", args.experiment, "--seeds",
                        str(args.seeds - 1), "--storage", str(args.storage)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    ours_s = time.time() - started
    ours, adamw, lion = ours_per_query(args)
    theirs, bm25 = {}, {}
    started = time.time()
    for fold in range(args.folds):
        print(f"fold {fold}: sentence-transformers defaults", file=sys.stderr, flush=True)
        theirs.update(run_theirs(args, fold, args.storage / f"st-fold{fold}"))
        bm25.update(bm25_per_query(args, fold))
    theirs_s = time.time() - started
    methods = {"BM25 (first stage)": bm25, "sentence-transformers defaults": theirs, "ours: AdamW tuned": adamw,
               "ours: Lion tuned": lion, "ours (optimizer chosen on dev)": ours}
    common = sorted(set.intersection(*(set(m) for m in methods.values())))
    table = {name: {metric: mean({q: m[q] for q in common}, metric) for metric in METRICS} for name, m in methods.items()}
    tests = {f"ours vs {name}": ttest_rel([ours[q]["ndcg_at_10"] for q in common],
                                          [methods[name][q]["ndcg_at_10"] for q in common]).pvalue
             for name in ("BM25 (first stage)", "sentence-transformers defaults")}
    print(f"\nTREC DL 2020, {args.folds}-fold CV over {len(common)} queries (BM25 top-100 reranked)")
    print(f"{'method':<34} {'nDCG@10':>8} {'MAP':>7} {'MRR@10':>7}")
    for name, scores in table.items():
        print(f"{name:<34} {scores['ndcg_at_10']:>8.4f} {scores['map']:>7.4f} {scores['mrr_at_10']:>7.4f}")
    for name, p in tests.items():
        print(f"paired t-test nDCG@10, {name}: p = {p:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"table": table, "p_values": tests, "queries": len(common),
                                    "settings": vars(args) | {"data": str(args.data), "storage": str(args.storage),
                                                              "out": str(args.out)},
                                    "seconds": {"ours": ours_s, "theirs": theirs_s}, "machine": machine()},
                                   indent=2, default=str))


if __name__ == "__main__":
    main()
