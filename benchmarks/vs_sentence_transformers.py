"""Training speed and dev quality: our trainable vs sentence-transformers' CrossEncoderTrainer.

    .venv/bin/python benchmarks/vs_sentence_transformers.py [--threads 2] [--epochs 2] [--out PATH]

Same model (packaged all-MiniLM-L6-v2 + a new 1-logit head, seeded alike), same training pairs
(judged positives + BM25 negatives of the embedded data's train queries: 704 pairs), same number
of epochs over them, same dev rerank (44 dev queries × BM25 top 20) scored by trainables.evaluate.
  theirs: CrossEncoder(model_dir, num_labels=1), CrossEncoderTrainer with
          BinaryCrossEntropyLoss and default CrossEncoderTrainingArguments (output_dir, epochs,
          report_to=none set), in this process with torch.set_num_threads(threads);
  ours:   trainables.loop.train_loop_per_worker under a Ray Train TorchTrainer, 1 worker with
          `threads` CPUs, the minilm space's settings as the embedded search uses them and
          TrainConfig's defaults for the searched keys.
pairs/s counts training only: theirs from on_train_begin to on_train_end, ours the reported
train_s of each epoch (model load, Ray start, evaluation and checkpoints excluded from both).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import EMBEDDED, RESULTS, machine, measured, print_table, start_local_ray, write_json

SEARCHED_DEFAULTS = dict(optimizer="adamw", lr=2e-5, weight_decay=0.01, scheduler="linear", warmup_ratio=0.1)


def our_config(args) -> dict:
    from search.run import EMBEDDED_SETTINGS
    from spaces.minilm import SPACE
    from trainables.models import PACKAGED_MINILM
    config = {**SPACE.fixed, **EMBEDDED_SETTINGS, **SEARCHED_DEFAULTS, "model": PACKAGED_MINILM,
              "data_dir": str(EMBEDDED), "epochs": args.epochs, "num_threads": args.threads}
    for key in ("lr", "batch_size", "group_by_length", "max_train_queries"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    return config


def dev_metrics(model, tokenizer, data, dev_pairs, cfg) -> dict:
    """Our evaluate_dev on one worker: rerank the dev candidates, score with pytrec_eval."""
    import torch

    from trainables.evaluate import mean_metrics, per_query_metrics, rerank_scores, to_run
    scores = rerank_scores(model, tokenizer, dev_pairs, data.queries, data.collection, cfg.max_length,
                           cfg.eval_batch_size, torch.device("cpu"))
    return mean_metrics(per_query_metrics(to_run(dev_pairs, scores), data.qrels, cfg.positive_level))


def run_theirs(config: dict, threads: int, out_dir: Path) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (CrossEncoder, CrossEncoderTrainer,
                                                     CrossEncoderTrainingArguments)
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import TrainerCallback

    from trainables.config import TrainConfig
    from trainables.evaluate import candidates
    from trainables.loop import load_trial_data
    from trainables.models import require

    cfg = TrainConfig.from_dict(config)
    torch.set_num_threads(threads)
    data, pairs, dev_qids = load_trial_data(cfg)  # exactly our pairs and dev queries
    train = Dataset.from_dict({"query": [data.queries[p.qid] for p in pairs],
                               "passage": [data.collection[p.pid] for p in pairs],
                               "label": [p.label for p in pairs]})
    torch.manual_seed(cfg.seed)  # the new head starts as ours does
    model = CrossEncoder(str(require(cfg.model)), num_labels=1)

    class TrainClock(TrainerCallback):
        """Training time only: after the dataloader and optimizer exist, until the last step."""
        def on_train_begin(self, *_, **__):
            self.threads = torch.get_num_threads()
            self.started = time.perf_counter()

        def on_train_end(self, *_, **__):
            self.seconds = time.perf_counter() - self.started

    clock = TrainClock()
    training_args = CrossEncoderTrainingArguments(output_dir=str(out_dir), num_train_epochs=cfg.epochs,
                                                  report_to="none")
    trainer = CrossEncoderTrainer(model=model, args=training_args, train_dataset=train,
                                  loss=BinaryCrossEntropyLoss(model), callbacks=[clock])
    output = trainer.train()
    started = time.perf_counter()
    metrics = dev_metrics(model.model, model.tokenizer, data, candidates(data.run, dev_qids, cfg.rerank_depth), cfg)
    return {"pairs": len(pairs) * cfg.epochs, "train_s": clock.seconds,
            "pairs_per_s": len(pairs) * cfg.epochs / clock.seconds, "steps": output.global_step,
            "train_loss": output.training_loss, "eval_s": time.perf_counter() - started,
            "torch_threads": clock.threads, **metrics,
            "settings": {"batch_size": training_args.per_device_train_batch_size,
                         "lr": training_args.learning_rate, "weight_decay": training_args.weight_decay,
                         "warmup": training_args.warmup_steps, "scheduler": str(training_args.lr_scheduler_type),
                         "optimizer": str(training_args.optim), "max_grad_norm": training_args.max_grad_norm,
                         "max_length": model.max_seq_length, "batch_sampler": str(training_args.batch_sampler),
                         "epochs": cfg.epochs}}


def run_ours(config: dict, threads: int, storage: Path) -> dict:
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from trainables.config import TrainConfig
    from trainables.loop import train_loop_per_worker

    start_local_ray()
    try:
        trainer = TorchTrainer(
            train_loop_per_worker, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": threads}),
            run_config=RunConfig(name="vs-st", storage_path=str(storage),
                                 checkpoint_config=CheckpointConfig(num_to_keep=None)))
        result = trainer.fit()
    finally:
        ray.shutdown()
    if result.error:
        raise SystemExit(f"our run failed: {result.error}")
    epochs = sorted((metrics for _, metrics in result.best_checkpoints), key=lambda m: m["epoch"])
    train_s = sum(m["train_s"] for m in epochs)
    pairs = sum(m["pairs_per_s"] * m["train_s"] for m in epochs)  # steps × batch per epoch
    final = epochs[-1]
    return {"pairs": round(pairs), "train_s": train_s, "pairs_per_s": pairs / train_s, "steps": final["step"],
            "train_loss": final["train_loss"], "eval_s": final["eval_s"],
            "per_epoch_pairs_per_s": [m["pairs_per_s"] for m in epochs],
            **{k: final[k] for k in ("ndcg_at_10", "map", "mrr_at_10", "recall_at_100", "num_queries")},
            "settings": {k: TrainConfig.from_dict(config).to_dict()[k] for k in ("batch_size", "lr", "weight_decay", "warmup_ratio", "scheduler",
                                                "optimizer", "grad_clip", "max_length", "group_by_length",
                                                "epochs", "num_threads")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (our worker's CPUs) in both")
    parser.add_argument("--epochs", type=int, default=2, help="epochs over the training pairs, both (default: "
                                                              "the embedded search's 2)")
    parser.add_argument("--max-train-queries", type=int, default=None, help="a subset, the same for both")
    parser.add_argument("--lr", type=float, default=None, help="ours only (default TrainConfig's 2e-5)")
    parser.add_argument("--batch-size", type=int, default=None, help="ours only (default 16, the embedded search's)")
    parser.add_argument("--group-by-length", type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                        help="ours only (default true)")
    parser.add_argument("--only", choices=("ours", "theirs"), default=None, help="run one side only")
    parser.add_argument("--out", type=Path, default=RESULTS / "vs_sentence_transformers.json")
    args = parser.parse_args()

    config = our_config(args)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-vs-st-") as tmp:
        # Theirs first, in this process, before Ray exists; ours after, with Ray up only for it.
        if args.only != "ours":
            print("theirs: CrossEncoderTrainer ...", file=sys.stderr, flush=True)
            runs["theirs"] = measured(lambda: run_theirs(config, args.threads, Path(tempfile.mkdtemp(dir=tmp))))
        if args.only != "theirs":
            print("ours: train_loop_per_worker under Ray Train ...", file=sys.stderr, flush=True)
            # A fresh storage dir per attempt: the same run name in the same storage would resume.
            runs["ours"] = measured(lambda: run_ours(config, args.threads, Path(tempfile.mkdtemp(dir=tmp))))

    rows, figures = [], {}
    for side, run in runs.items():
        s = run["settings"]
        rows += [(f"{side}: pairs/s (training only)", f"{run['pairs_per_s']:7.1f}  ({run['pairs']} pairs in "
                                                      f"{run['train_s']:.1f} s, {run['steps']} steps)"),
                 (f"{side}: dev nDCG@10", f"{run['ndcg_at_10']:7.4f}  (MRR@10 {run['mrr_at_10']:.4f}, "
                                          f"final train loss {run['train_loss']:.4f})"),
                 (f"{side}: settings", ", ".join(f"{k}={v}" for k, v in s.items())),
                 (f"{side}: machine load", f"other processes {run['other_cores']:.2f} cores, steal "
                                           f"{run['steal_cores']:.2f} cores (while this side ran)")]
    if len(runs) == 2:
        ours, theirs = runs["ours"], runs["theirs"]
        figures = {"pairs_per_s_ratio": ours["pairs_per_s"] / theirs["pairs_per_s"],
                   "ours_pairs_per_s": ours["pairs_per_s"], "theirs_pairs_per_s": theirs["pairs_per_s"],
                   "ours_ndcg_at_10": ours["ndcg_at_10"], "theirs_ndcg_at_10": theirs["ndcg_at_10"],
                   "ndcg_no_worse": ours["ndcg_at_10"] >= theirs["ndcg_at_10"],
                   "target": "pairs_per_s_ratio >= 1.3 (goal 1.5 on CPU); ours nDCG@10 no worse"}
        rows += [("pairs_per_s_ratio (ours/theirs)", f"{figures['pairs_per_s_ratio']:7.2f}  target >= 1.3, goal 1.5: "
                                                      f"{'PASS' if figures['pairs_per_s_ratio'] >= 1.3 else 'FAIL'}"),
                 ("nDCG@10 ours - theirs", f"{ours['ndcg_at_10'] - theirs['ndcg_at_10']:+7.4f}  "
                                           f"{'no worse' if figures['ndcg_no_worse'] else 'WORSE'}")]
    print_table(f"ours vs sentence-transformers: packaged MiniLM, embedded data, {args.epochs} epochs, "
                f"{args.threads} torch threads, order: theirs then ours", rows)
    write_json(args.out, {"benchmark": "vs_sentence_transformers", "machine": machine(), "our_config": config,
                          "figures": figures, "runs": runs})


if __name__ == "__main__":
    main()
