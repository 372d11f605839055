"""Training speed and dev quality: our trainable vs sentence-transformers' CrossEncoderTrainer.

    .venv/bin/python benchmarks/vs_sentence_transformers.py [--seeds 3] [--recipe theirs|ours] [--threads 2]

Same model (packaged all-MiniLM-L6-v2 + a new 1-logit head, seeded alike), same training pairs
(judged positives + BM25 negatives of the embedded data's train queries: 704 pairs), same epochs,
same dev rerank (44 dev queries × BM25 top 20), and both final models scored by the same function
in this process (trainables.evaluate, fp32, no interpolation with BM25).
  theirs: CrossEncoder(model_dir, num_labels=1) and CrossEncoderTrainer with BinaryCrossEntropyLoss
          and default CrossEncoderTrainingArguments (only output_dir, epochs, seed, report_to=none
          set), in this process, torch.set_num_threads(threads);
  ours:   trainables.loop.train_loop_per_worker under a Ray Train TorchTrainer, 1 worker with
          `threads` CPUs. --recipe theirs (default): sentence-transformers' own optimisation
          settings (lr, batch size, weight decay, warmup, schedule, clipping, max length), read
          from their run, so only the engineering differs (fused AdamW, bf16 autocast where the
          CPU has it, our batch order); --recipe ours: the embedded search's settings and
          TrainConfig's defaults for the searched keys.
pairs/s counts training only: theirs from on_train_begin to on_train_end, ours the reported
train_s of each epoch (model load, Ray start, evaluation and checkpoints excluded from both).
Seeds run interleaved (theirs, ours, theirs, ...); nDCG@10 is compared per query on the
seed-averaged scores (paired permutation test), so one lucky seed cannot decide it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, embedded_config, machine, measured, print_table, start_local_ray, write_json

def data_config(args) -> dict:
    """The data both sides train and score on, and our recipe="ours" settings."""
    config = embedded_config(epochs=args.epochs, num_threads=args.threads, first_stage_weight=0.0)
    if args.max_train_queries is not None:
        config["max_train_queries"] = args.max_train_queries
    return config


def their_recipe(settings: dict) -> dict:
    """TrainConfig keys for sentence-transformers' optimisation settings, as their run used them."""
    if settings["scheduler"] not in ("linear", "cosine", "constant"):
        raise SystemExit(f"their schedule {settings['scheduler']!r} has no TrainConfig equivalent")
    return {"optimizer": "adamw", "lr": settings["lr"], "batch_size": settings["batch_size"],
            "weight_decay": settings["weight_decay"], "warmup_ratio": float(settings["warmup_steps"]),
            "scheduler": settings["scheduler"], "grad_clip": settings["max_grad_norm"],
            "beta1": settings["adam_beta1"], "beta2": settings["adam_beta2"], "max_length": settings["max_length"]}


def dev_per_query(model, tokenizer, config: dict) -> dict[str, dict[str, float]]:
    """Both sides' final models, scored alike: rerank the dev candidates in fp32, pytrec_eval."""
    import torch

    from trainables.config import TrainConfig
    from trainables.evaluate import candidates, per_query_metrics, rerank_scores, to_run
    from trainables.loop import load_trial_data
    cfg = TrainConfig.from_dict(config)
    trial = load_trial_data(cfg)
    data, dev_qids = trial.eval, trial.dev_qids
    pairs = candidates(data.run, dev_qids, cfg.rerank_depth)
    model.eval()
    scores = rerank_scores(model, tokenizer, pairs, data.queries, data.collection, cfg.max_length,
                           cfg.eval_batch_size, torch.device("cpu"))
    return per_query_metrics(to_run(pairs, scores), data.qrels, cfg.positive_level)


def run_theirs(config: dict, seed: int, threads: int, out_dir: Path) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (CrossEncoder, CrossEncoderTrainer,
                                                     CrossEncoderTrainingArguments)
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import TrainerCallback

    from trainables.config import TrainConfig
    from trainables.loop import load_trial_data
    from trainables.models import require

    cfg = TrainConfig.from_dict({**config, "seed": seed})
    torch.set_num_threads(threads)
    trial = load_trial_data(cfg)
    data, pairs = trial.eval, trial.id_pairs()  # exactly our pairs for this seed
    train = Dataset.from_dict({"query": [data.queries[p.qid] for p in pairs],
                               "passage": [data.collection[p.pid] for p in pairs],
                               "label": [p.label for p in pairs]})
    torch.manual_seed(seed)  # the new head starts as ours does
    model = CrossEncoder(str(require(cfg.model)), num_labels=1)

    class TrainClock(TrainerCallback):
        """Training time only: after the dataloader and optimizer exist, until the last step."""
        def on_train_begin(self, *_, **__):
            self.threads = torch.get_num_threads()
            self.started = time.perf_counter()

        def on_train_end(self, *_, **__):
            self.seconds = time.perf_counter() - self.started

    clock = TrainClock()
    args = CrossEncoderTrainingArguments(output_dir=str(out_dir), num_train_epochs=cfg.epochs, seed=seed,
                                         report_to="none")
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train,
                                  loss=BinaryCrossEntropyLoss(model), callbacks=[clock])
    output = trainer.train()
    scheduler = getattr(args.lr_scheduler_type, "value", str(args.lr_scheduler_type))
    settings = {"batch_size": args.per_device_train_batch_size, "lr": args.learning_rate,
                "weight_decay": args.weight_decay, "warmup_steps": args.warmup_steps, "scheduler": scheduler,
                "optimizer": getattr(args.optim, "value", str(args.optim)), "max_grad_norm": args.max_grad_norm,
                "adam_beta1": args.adam_beta1, "adam_beta2": args.adam_beta2, "max_length": model.max_length,
                "bf16": args.bf16, "batch_sampler": getattr(args.batch_sampler, "value", str(args.batch_sampler)),
                "epochs": cfg.epochs}
    if settings["warmup_steps"] >= 1:  # transformers reads a value below 1 as a share of the steps
        raise SystemExit("their default warms up by a step count; map it to warmup_ratio before comparing")
    return {"pairs": len(pairs) * cfg.epochs, "train_s": clock.seconds,
            "pairs_per_s": len(pairs) * cfg.epochs / clock.seconds, "steps": output.global_step,
            "train_loss": output.training_loss, "torch_threads": clock.threads, "settings": settings,
            "per_query": dev_per_query(model.model, model.tokenizer, config)}


def run_ours(config: dict, seed: int, threads: int, storage: Path) -> dict:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from trainables.checkpoint import MODEL_DIR
    from trainables.models import load_reranker
    from trainables.loop import train_loop_per_worker

    config = {**config, "seed": seed}
    start_local_ray()
    try:
        result = TorchTrainer(
            train_loop_per_worker, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": threads}),
            run_config=RunConfig(name="vs-st", storage_path=str(storage))).fit()
    finally:
        ray.shutdown()
    if result.error:
        raise SystemExit(f"our run failed: {result.error}")
    epochs = [metrics for _, metrics in result.best_checkpoints]
    train_s = sum(m["train_s"] for m in epochs)
    pairs = sum(m["pairs_per_s"] * m["train_s"] for m in epochs)  # steps × batch per epoch
    with result.checkpoint.as_directory() as directory:
        tokenizer, model = load_reranker(Path(directory) / MODEL_DIR)
    final = max(epochs, key=lambda m: m["epoch"])
    return {"pairs": round(pairs), "train_s": train_s, "pairs_per_s": pairs / train_s, "steps": final["step"],
            "train_loss": final["train_loss"], "torch_threads": threads,
            "settings": {k: config[k] for k in ("batch_size", "lr", "weight_decay", "warmup_ratio", "scheduler",
                                                "optimizer", "grad_clip", "max_length", "bf16", "group_by_length",
                                                "epochs")
                         if k in config},
            "per_query": dev_per_query(model, tokenizer, config)}


def summarize(runs: list[dict]) -> dict:
    from trainables.evaluate import mean_metrics
    ndcg = [mean_metrics(r["per_query"])["ndcg_at_10"] for r in runs]
    rates = [r["pairs_per_s"] for r in runs]
    qids = runs[0]["per_query"].keys()
    return {"pairs_per_s": statistics.median(rates), "pairs_per_s_each": rates,
            "ndcg_at_10": statistics.mean(ndcg), "ndcg_at_10_each": ndcg,
            "per_query_ndcg": {q: statistics.mean(r["per_query"][q]["ndcg_at_10"] for r in runs) for q in qids}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per side (0..N-1)")
    parser.add_argument("--recipe", choices=("theirs", "ours"), default="theirs",
                        help="our optimisation settings: sentence-transformers' (default) or the embedded search's")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (our worker's CPUs) in both")
    parser.add_argument("--epochs", type=int, default=2, help="epochs, both (default: the embedded search's 2)")
    parser.add_argument("--max-train-queries", type=int, default=None, help="a subset, the same for both")
    parser.add_argument("--ours-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one of our TrainConfig keys after the recipe, e.g. group_by_length=false "
                             "(JSON values; repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="default results/vs_sentence_transformers[_ours][_KEY-VALUE].json")
    args = parser.parse_args()
    from analysis.stats import paired_comparison

    config = data_config(args)
    overrides = {}
    for item in args.ours_set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--ours-set {item!r}: expected KEY=VALUE")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    from trainables.config import TrainConfig
    TrainConfig.from_dict({**config, **overrides})  # an unknown key fails here, not inside Ray
    # Variants never overwrite the headline file: results/vs_sentence_transformers[_ours][_key-value...].json
    suffix = ("" if args.recipe == "theirs" else "_ours") + "".join(f"_{k}-{v}" for k, v in overrides.items())
    out = args.out or RESULTS / f"vs_sentence_transformers{suffix}.json"
    runs = {"theirs": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="bench-vs-st-") as tmp:
        for seed in range(args.seeds):
            print(f"seed {seed}: theirs (CrossEncoderTrainer) ...", file=sys.stderr, flush=True)
            runs["theirs"].append(measured(lambda: run_theirs(config, seed, args.threads, Path(tempfile.mkdtemp(dir=tmp)))))
            ours_config = {**config, **their_recipe(runs["theirs"][-1]["settings"])} if args.recipe == "theirs" else config
            ours_config = {**ours_config, **overrides}
            print(f"seed {seed}: ours (Ray Train) ...", file=sys.stderr, flush=True)
            # A fresh storage dir per attempt: the same run name in the same storage would resume.
            runs["ours"].append(measured(lambda: run_ours(ours_config, seed, args.threads,
                                                          Path(tempfile.mkdtemp(dir=tmp)))))
            for side in ("theirs", "ours"):
                r = runs[side][-1]
                print(f"    {side}: {r['pairs_per_s']:.1f} pairs/s, other processes {r['other_cores']:.2f} cores",
                      file=sys.stderr)

    sides = {side: summarize(side_runs) for side, side_runs in runs.items()}
    ours, theirs = sides["ours"], sides["theirs"]
    test = paired_comparison(ours["per_query_ndcg"], theirs["per_query_ndcg"])
    ratio = ours["pairs_per_s"] / theirs["pairs_per_s"]
    # "No worse": our seed-averaged dev nDCG@10 is at least theirs, or below it by less than the
    # queries can tell apart (permutation p >= 0.05) and by under 0.01.
    no_worse = test.mean_diff >= 0 or (test.permutation_p >= 0.05 and test.mean_diff > -0.01)
    figures = {"pairs_per_s_ratio": ratio, "ours_pairs_per_s": ours["pairs_per_s"],
               "theirs_pairs_per_s": theirs["pairs_per_s"], "ours_ndcg_at_10": ours["ndcg_at_10"],
               "theirs_ndcg_at_10": theirs["ndcg_at_10"], "ndcg_diff": test.mean_diff,
               "ndcg_diff_ci95": [test.ci_low, test.ci_high], "ndcg_permutation_p": test.permutation_p,
               "ndcg_no_worse": no_worse, "seeds": args.seeds, "recipe": args.recipe, "ours_set": overrides,
               "target": "pairs_per_s_ratio >= 1.3 (goal 1.5 on CPU); ours nDCG@10 no worse"}
    rows = []
    for side in ("theirs", "ours"):
        s, settings = sides[side], runs[side][0]["settings"]
        rows += [(f"{side}: pairs/s (median of seeds)", f"{s['pairs_per_s']:7.1f}  each: "
                                                         + ", ".join(f"{v:.1f}" for v in s["pairs_per_s_each"])),
                 (f"{side}: dev nDCG@10 (mean of seeds)", f"{s['ndcg_at_10']:7.4f}  each: "
                                                            + ", ".join(f"{v:.4f}" for v in s["ndcg_at_10_each"])),
                 (f"{side}: settings", ", ".join(f"{k}={v}" for k, v in settings.items())),
                 (f"{side}: most load from other processes",
                  f"{max(r['other_cores'] for r in runs[side]):.2f} cores")]
    rows += [("pairs_per_s_ratio (ours/theirs)", f"{ratio:7.2f}  target >= 1.3, goal 1.5: "
                                                  f"{'PASS' if ratio >= 1.3 else 'FAIL'}"),
             ("nDCG@10 ours - theirs", f"{test.mean_diff:+7.4f}  95% CI {test.ci_low:+.4f}..{test.ci_high:+.4f}, "
                                       f"permutation p {test.permutation_p:.3f} over {test.n_queries} queries: "
                                       f"{'no worse' if no_worse else 'WORSE'}")]
    print_table(f"ours vs sentence-transformers: packaged MiniLM, embedded data, {args.epochs} epochs, {args.seeds} "
                f"seeds, {args.threads} torch threads, our recipe: {args.recipe}", rows)
    for side_runs in runs.values():
        for r in side_runs:
            r.pop("per_query")
    write_json(out, {"benchmark": "vs_sentence_transformers", "machine": machine(), "data_config": config,
                     "figures": figures, "summary": {k: {kk: vv for kk, vv in v.items() if kk != "per_query_ndcg"}
                                                     for k, v in sides.items()}, "runs": runs})


if __name__ == "__main__":
    main()
