"""Run a hyperparameter search for one backbone: Optuna TPE proposes, ASHA stops, Ray Train trains.

    python -m search.run --space minilm                       # embedded data, packaged MiniLM, CPU
    python -m search.run --space modernbert --data DIR --address auto --mlflow-uri http://HEAD:5000
    python -m search.run --space gte --smoke-test             # tiny random model, a minute on CPU
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from search.embedded_data import DEFAULT_DIR as EMBEDDED_DIR
from trainables.errors import UsageError, exit_on_usage_error

METRIC, MODE = "ndcg_at_10", "max"
# The embedded data is small: short inputs, small batches and a shallow rerank keep the default
# search within minutes on two CPU cores.
EMBEDDED_SETTINGS = dict(max_length=64, batch_size=16, negatives_per_query=3, rerank_depth=20, epochs=2)
EMBEDDED_TRIALS = 6
SMOKE_SETTINGS = dict(max_length=48, batch_size=8, negatives_per_query=3, rerank_depth=10, epochs=2,
                      max_train_queries=16, max_dev_queries=6)
RUNTIME_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
               "RAY_AUTH_MODE": "disabled", "RAY_AIR_NEW_OUTPUT": "0", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "RAY_TRAIN_V2_ENABLED": "1"}


def parse_args(argv=None) -> argparse.Namespace:
    from spaces import names
    parser = argparse.ArgumentParser(prog="python -m search.run", description=__doc__.split("\n")[0])
    parser.add_argument("--space", required=True, help=f"backbone search space: {', '.join(names())}")
    parser.add_argument("--trials", type=int, default=None, help=f"trials to run (default 20; {EMBEDDED_TRIALS} on the embedded data)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (ASHA's max_t)")
    parser.add_argument("--data", type=Path, default=None,
                        help="dir with collection.tsv, queries.tsv, qrels.txt and a TREC run (default: embedded)")
    parser.add_argument("--model", default=None, help="HF id or local dir (default: the space's backbone)")
    parser.add_argument("--workers-per-trial", type=int, default=None, help="Ray Train workers per trial")
    parser.add_argument("--gpus-per-trial", type=int, default=None,
                        help=f"GPUs per trial, one worker each (default 3 if the cluster has GPUs, else 0)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="upper bound on trials at once")
    parser.add_argument("--dev-fraction", type=float, default=0.2, help="share of judged queries held out for dev")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--mlflow-uri", default=None, help="tracking URI (default: sqlite in --storage)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment and Tune run name")
    parser.add_argument("--storage", type=Path, default=Path("runs"), help="checkpoints, Tune state, MLflow db")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sampler and every trial")
    parser.add_argument("--smoke-test", action="store_true", help="tiny random model, tiny data slice")
    parser.add_argument("--output-json", type=Path, default=None, help="write the best trial and all trials here")
    parser.add_argument("--address", default=None, help="existing Ray cluster (default: start a local one)")
    parser.add_argument("--max-failures", type=int, default=1, help="retries of a failed trial from its checkpoint")
    args = parser.parse_args(argv)
    for name in ("trials", "epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be >= 1")
    if not 0 < args.dev_fraction < 1:
        raise UsageError("--dev-fraction must be in (0, 1)")
    if args.max_failures < 0:
        raise UsageError("--max-failures must be >= 0")
    return args


def resolve_model(space, args, storage: Path) -> str:
    from trainables.models import locate, require
    from trainables.tiny import build_tiny_model
    if args.smoke_test:
        return str(build_tiny_model(space.tiny_kind, storage / "tiny-models" / space.tiny_kind))
    if args.model:
        return str(require(args.model))
    if locate(space.model) is not None:
        return space.model
    if space.fallback_model:
        print(f"note: {space.model} is not available offline; using {space.fallback_model} instead "
              f"(pass --model to choose)", file=sys.stderr)
        return str(require(space.fallback_model))
    raise UsageError(f"space {space.name!r} needs {space.model}, which is not available offline: "
                     f"pass --model with a local copy, or use --smoke-test")


def trial_base(space, args, model: str, data_dir: Path) -> dict:
    """Every TrainConfig key a trial does not search."""
    base = {**space.fixed, "model": model, "data_dir": str(data_dir.resolve()), "seed": args.seed,
            "dev_fraction": args.dev_fraction, "split_seed": args.split_seed}
    if args.data is None:
        base.update(EMBEDDED_SETTINGS)
    if args.smoke_test:
        base.update(SMOKE_SETTINGS)
    if args.epochs:
        base["epochs"] = args.epochs
    return base


def first_stage_dev_metrics(base: dict) -> dict:
    """The first stage scored on the same dev queries and depth the trials rerank."""
    from trainables.config import TrainConfig
    from trainables.data import RetrievalData, split_queries
    from trainables.evaluate import candidates, score_run, to_run
    cfg = TrainConfig.from_dict(base)
    data = RetrievalData.load(cfg.data_dir)
    _, dev = split_queries(data, cfg.dev_fraction, cfg.split_seed)
    pairs = candidates(data.run, dev[:cfg.max_dev_queries], cfg.rerank_depth)
    return score_run(to_run(pairs, [data.run[q][p] for q, p in pairs]), data.qrels, cfg.positive_level)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_ray(address):
    import ray
    os.environ.update(RUNTIME_ENV)
    kwargs = dict(runtime_env={"env_vars": RUNTIME_ENV}, log_to_driver=True)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # The dashboard serves the state API that Ray Train uses to release a finished
            # trial's placement group; without it the next trial waits forever for CPUs.
            ray.init(include_dashboard=True, dashboard_host="127.0.0.1", **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise UsageError(f"cannot reach Ray cluster at {address or 'local'}: {err}") from None
    return ray.cluster_resources()


def build_tuner(space, args, base, resources, trials, storage: Path, callbacks, experiment: str):
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch
    from search.trainable import trainable

    # metric and mode go to the searcher and scheduler themselves: ConcurrencyLimiter does not pass
    # them on to a define-by-run OptunaSearch.
    searcher = OptunaSearch(space=space.suggest, metric=METRIC, mode=MODE, sampler=TPESampler(seed=args.seed, n_startup_trials=min(10, max(2, trials // 2))))
    reporter = tune.CLIReporter(
        parameter_columns=["optimizer", "lr", "weight_decay", "scheduler"],
        metric_columns=["epoch", "ndcg_at_10", "map", "mrr_at_10", "train_loss", "pairs_per_s"],
        max_report_frequency=30)
    return tune.Tuner(
        trainable(base, resources, str((storage / "trials").resolve()), args.max_failures),
        tune_config=tune.TuneConfig(
            num_samples=trials,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=resources.concurrency),
            scheduler=ASHAScheduler(metric=METRIC, mode=MODE, time_attr="training_iteration", max_t=base["epochs"], grace_period=1,
                                    reduction_factor=2)),
        run_config=tune.RunConfig(name=experiment, storage_path=str((storage / "tune").resolve()),
                                  callbacks=callbacks, progress_reporter=reporter, verbose=1),
    )


def summarize(results) -> list[dict]:
    rows = []
    for result in results:
        metrics = result.metrics or {}
        rows.append({"trial_id": metrics.get("trial_id", result.path.rsplit("_", 2)[-2] if result.path else "?"),
                     "config": result.config, "status": "ERROR" if result.error else "TERMINATED",
                     "epochs": metrics.get("epoch"), "checkpoint": metrics.get("checkpoint_path"),
                     "metrics": {k: metrics.get(k) for k in ("ndcg_at_10", "map", "mrr_at_10", "recall_at_100",
                                                               "train_loss", "pairs_per_s")}})
    return rows


def print_table(rows: list[dict], first_stage: dict, best: dict | None) -> None:
    header = f"{'trial':<10} {'optimizer':<9} {'lr':>9} {'wd':>8} {'scheduler':<9} {'ep':>2} " \
             f"{'ndcg@10':>8} {'map':>7} {'mrr@10':>7}"
    print("\n" + header + "\n" + "-" * len(header))
    for row in sorted(rows, key=lambda r: -(r["metrics"]["ndcg_at_10"] or -1)):
        c, m = row["config"], row["metrics"]
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"
        print(f"{row['trial_id']:<10} {c.get('optimizer', '-'):<9} {c.get('lr', 0):>9.2e} "
              f"{c.get('weight_decay', 0):>8.1e} {c.get('scheduler', '-'):<9} {row['epochs'] or 0:>2} "
              f"{fmt(m['ndcg_at_10']):>8} {fmt(m['map']):>7} {fmt(m['mrr_at_10']):>7}")
    print(f"{'first stage (BM25 run), same dev queries':<52} {first_stage['ndcg_at_10']:>8.4f} "
          f"{first_stage['map']:>7.4f} {first_stage['mrr_at_10']:>7.4f}")
    if best:
        gain = best["metrics"]["ndcg_at_10"] - first_stage["ndcg_at_10"]
        print(f"\nbest trial {best['trial_id']}: dev nDCG@10 {best['metrics']['ndcg_at_10']:.4f} vs first stage "
              f"{first_stage['ndcg_at_10']:.4f} ({gain:+.4f}); checkpoint {best['checkpoint']}")


@exit_on_usage_error
def main(argv=None) -> dict:
    from spaces import get_space
    from search import resources as resource_plan
    from search import tracking

    args = parse_args(argv)
    space = get_space(args.space)
    storage = args.storage.resolve()
    storage.mkdir(parents=True, exist_ok=True)
    data_dir = args.data or EMBEDDED_DIR
    trials = args.trials or (EMBEDDED_TRIALS if args.data is None else 20)
    if args.smoke_test and args.trials is None:
        trials = 2
    model = resolve_model(space, args, storage)
    base = trial_base(space, args, model, data_dir)
    first_stage = first_stage_dev_metrics(base)  # also validates the data before Ray starts
    experiment = args.experiment or f"rerank-{space.name}"
    uri = args.mlflow_uri or tracking.default_uri(storage)
    client, experiment_id = tracking.connect(uri, experiment, storage)

    cluster = start_ray(args.address)
    resources = resource_plan.plan(cluster.get("CPU", 1), cluster.get("GPU", 0), args.gpus_per_trial,
                                   args.workers_per_trial, args.max_concurrent)
    print(f"space {space.name}: {trials} trials × {base['epochs']} epochs, model {model}, data {data_dir}; "
          f"{resources.num_workers} worker(s) per trial ({'GPU' if resources.use_gpu else 'CPU'}, "
          f"{resources.cpus_per_worker} CPU each), {resources.concurrency} at a time", file=sys.stderr)
    parent = client.create_run(experiment_id, run_name=f"search-{space.name}", tags={
        "space": space.name, "git_commit": git_commit(), "data": str(Path(data_dir).resolve()),
        "smoke_test": str(args.smoke_test)})
    parent_id = parent.info.run_id
    for key, value in {"space": space.name, "trials": trials, "epochs": base["epochs"], "model": model,
                       "workers_per_trial": resources.num_workers, "use_gpu": resources.use_gpu,
                       "seed": args.seed, **{f"first_stage_{k}": v for k, v in first_stage.items()}}.items():
        client.log_param(parent_id, key, value)
    trial_runs = tracking.TrialRuns(uri, experiment_id, parent_id, fixed_params=base)
    status = "FAILED"
    try:
        tuner = build_tuner(space, args, base, resources, trials, storage, [trial_runs], experiment)
        results = tuner.fit()
        rows = summarize(results)
        scored = [r for r in rows if r["metrics"]["ndcg_at_10"] is not None]
        # Trials compare on their final epoch's checkpoint; the best epoch is only shown in MLflow.
        # Trials that ran every epoch come first: an early-stopped trial's last epoch is not final.
        complete = [r for r in scored if r["epochs"] == base["epochs"]]
        best = max(complete or scored, key=lambda r: r["metrics"]["ndcg_at_10"], default=None)
        print_table(rows, first_stage, best)
        summary = {"space": space.name, "experiment": experiment, "mlflow_uri": uri, "parent_run_id": parent_id,
                   "first_stage": first_stage, "best": best, "trials": rows}
        if best:
            for key, value in best["metrics"].items():
                if value is not None:
                    client.log_metric(parent_id, f"best_{key}", value)
            client.set_tag(parent_id, "best_checkpoint", best["checkpoint"] or "")
            if best["checkpoint"] and Path(best["checkpoint"], "model").is_dir():
                client.log_artifacts(parent_id, str(Path(best["checkpoint"], "model")), "best_model")
        if args.output_json:
            args.output_json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.output_json.with_name(args.output_json.name + ".tmp")
            tmp.write_text(json.dumps(summary, indent=2, default=str))
            tmp.replace(args.output_json)
        status = "FINISHED" if best else "FAILED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        trial_runs.close_open("KILLED")
        client.set_terminated(parent_id, status)
        import ray
        ray.shutdown()


if __name__ == "__main__":
    summary = main()
    sys.exit(0 if summary and summary.get("best") else 1)
