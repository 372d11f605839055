"""Re-train each optimizer's best configuration with K new seeds and score it on the held-out test fold.

    python -m search.rerun --experiment rerank-minilm --seeds 3 [--space minilm] [--mlflow-uri URI]

For every space in the experiment, every test fold its searches held out (named by data, folds,
split seed and test fold) and every optimizer, the best trial is the one with the highest
final-epoch dev nDCG@10 among trials that ran every epoch (as the search picks it), over the
FINISHED searches only: a KILLED search may change its best when resumed. A joint study (both
optimizers in one TPE study) is refused. The trial's own final checkpoint is scored on the test
fold as its seed's rerun (training that seed again would repeat the trial), and its exact
configuration is trained again with K new seeds, the first K other than the trial's (the seed
drives the new head's initialisation, hard-negative sampling and batch order; the query split
stays the search's); each final checkpoint reranks the test fold's first-stage candidates. Every rerun is an MLflow child run of
the search that produced the configuration (tag role=rerun), with test_* metrics and the
per-query scores (per_query.json) that analysis.report's paired tests need. Reruns already
FINISHED for the same (trial, seed) are skipped, so a crashed rerun can simply be started again.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trainables.errors import UsageError, exit_on_usage_error

PER_QUERY_ARTIFACT = "per_query.json"


def best_configs(experiment, spaces, allow_joint: bool = False) -> list[tuple[object, object, str]]:
    """(search, trial, space) of the current best trial of each space × test fold × optimizer, the
    fold named by (data, folds, split seed, test fold), among FINISHED searches that kept a test
    fold (analysis/evidence.py). Joint studies are refused unless allow_joint."""
    from analysis.evidence import current_best, fold_key, is_joint
    from analysis.summary import backbones
    chosen = []
    for backbone in backbones(experiment):
        if spaces and backbone.space not in spaces:
            continue
        for search in backbone.searches:
            why = ("it kept no test fold (run it with --folds K; --compare-optimizers sets 5)" if fold_key(search) is None
                   else f"it is {search.status}, so its best may still change (resume it)"
                   if search.status != "FINISHED" else None)
            if why:
                print(f"skipping search {search.run_id[:8]} of space {backbone.space!r}: {why}", file=sys.stderr)
        for choice in current_best(backbone.searches):
            if is_joint(choice.search) and not allow_joint:
                raise UsageError(f"search {choice.search.run_id} of space {backbone.space!r} is a joint study (both "
                                 "optimizers in one TPE study): its configurations are no fair evidence for the "
                                 "comparison; search with --compare-optimizers, or pass --allow-joint-study")
            chosen.append((choice.search, choice.trial, backbone.space))
    if not chosen:
        raise UsageError(f"experiment {experiment.name!r} has no finished trials of a FINISHED search with test "
                         "folds to rerun")
    return chosen


@dataclass
class Plan:
    """One seed of one chosen config: trained again, or (checkpoint set) the trial's own final
    checkpoint scored on the test fold, since re-training the trial's own seed would repeat it."""
    search: object
    trial: object
    space: str
    seed: int
    config: dict
    checkpoint: str | None = None


def own_checkpoint(trial) -> str | None:
    from trainables.checkpoint import STATE_FILE
    path = trial.tags.get("checkpoint_path")
    return path if path and Path(path, STATE_FILE).is_file() else None


def plan_reruns(chosen: list, seeds: int, train_dict) -> list[Plan]:
    """Per chosen (search, trial, space): the trial's own seed scored from its checkpoint (when it
    is still on disk) and `seeds` new seeds trained; (trial, seed) pairs already FINISHED are skipped.
    train_dict turns a trial's params into its training config."""
    plans = []
    for search, trial, space in chosen:
        config = train_dict(trial.params)
        done = {(r.source_trial, r.seed) for r in search.reruns if r.status == "FINISHED"}
        own, checkpoint = config["seed"], own_checkpoint(trial)
        if checkpoint is None:
            print(f"{space} {trial.optimizer}: trial {trial.trial_id}'s final checkpoint is gone; "
                  f"its seed {own} is not reused", file=sys.stderr)
        new = [s for s in range(seeds + 1) if s != own][:seeds]
        for seed, path in [(own, checkpoint)] * (checkpoint is not None) + [(s, None) for s in new]:
            if (trial.trial_id, str(seed)) not in done:
                plans.append(Plan(search, trial, space, seed, {**config, "seed": seed, "evaluate_test": True}, path))
    return plans


def check_batch_splits(plans: list[Plan], workers: int | None) -> None:
    """Every rerun's global batch must split over the trial's workers, before any trains."""
    from trainables.config import TrainConfig
    from trainables.data import check_batch_split
    from trainables.losses import config_group
    if not workers:
        return
    for plan in plans:
        cfg = TrainConfig.from_dict(plan.config)
        check_batch_split(cfg.batch_size, workers, cfg.grad_accum, config_group(cfg))  # listwise: whole groups


def score_own_checkpoint(plan: Plan, resources) -> dict:
    """The trial's final checkpoint on the test fold, as a Ray task with one trial worker's resources."""
    import ray

    from trainables.evaluate import mean_metrics
    from trainables.scoring import score_checkpoint
    task = ray.remote(num_cpus=resources.cpus_per_worker, num_gpus=1 if resources.use_gpu else 0)(score_checkpoint)
    per_query = ray.get(task.remote(plan.checkpoint, {**plan.config, "num_threads": resources.cpus_per_worker}))
    return {**{f"test_{k}": v for k, v in mean_metrics(per_query).items()}, "test_per_query": per_query}


def train_and_test(config: dict, resources, storage: Path, name: str) -> dict:
    """One seed: a Ray Train fit of the config, returning its final report (with test_* scores)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from search.energy import EpochEnergy, total_energy_kj
    from trainables.checkpoint import TEST_PER_QUERY
    from trainables.loop import train_loop_per_worker
    # Kept across restarts: a rerun started again continues from its last checkpoint under the same name.
    energy_file = storage / f"{name}.energy.json"
    energy_file.parent.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=resources.num_workers, use_gpu=resources.use_gpu,
                                     resources_per_worker=resources.worker_resources()),
        run_config=RunConfig(name=name, storage_path=str(storage), checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=1), callbacks=[EpochEnergy(energy_file)]))
    result = trainer.fit()
    if result.error or result.checkpoint is None:
        raise RuntimeError(f"rerun {name} failed: {result.error}")
    with result.checkpoint.as_directory() as directory:
        per_query = json.loads((Path(directory) / TEST_PER_QUERY).read_text())
    energy = total_energy_kj(energy_file)  # every report's, as Table I reports energy per training run
    return {**result.metrics, "test_per_query": per_query, **({"energy_kj": energy} if energy is not None else {})}


def log_rerun(client, experiment_id: str, plan: Plan, metrics: dict) -> str:
    search, trial, seed, config = plan.search, plan.trial, plan.seed, plan.config
    run = client.create_run(experiment_id, run_name=f"rerun-{trial.optimizer}-seed{seed}", tags={
        "mlflow.parentRunId": search.run_id, "role": "rerun", "optimizer": trial.optimizer, "seed": str(seed),
        "source_trial": trial.trial_id, "gpu": str(metrics.get("gpu", "")),
        **({"reused_checkpoint": plan.checkpoint} if plan.checkpoint else {})})
    run_id = run.info.run_id
    from mlflow.entities import Metric, Param
    # MLflow's step as a trial's: the optimiser step with eval_every, else the epoch.
    step = int(metrics["step"]) if config.get("eval_every") and "step" in metrics else config["epochs"]
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in config.items()], metrics=[
        Metric(k, float(v), 0, step) for k, v in metrics.items()
        if (k.startswith("test_") and isinstance(v, (int, float))) or k in ("gpu_util_mean", "energy_kj", "ndcg_at_10")])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PER_QUERY_ARTIFACT
        path.write_text(json.dumps(metrics["test_per_query"], indent=1))
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    return run_id


@exit_on_usage_error
def main(argv=None) -> list[dict]:
    from analysis.runs import load_experiment
    from search import resources as resource_plan
    from search import tracking, validate
    from search.ray_session import add_ray_arguments, cpus_per_gpu, largest_gpu_node, start_ray
    from trainables.config import TrainConfig

    parser = argparse.ArgumentParser(prog="python -m search.rerun", description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", required=True, help="MLflow experiment of the search(es)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="new seeds to train per config (default 3), beside the trial's own checkpoint")
    parser.add_argument("--space", action="append", default=[], help="only these spaces (default: all)")
    parser.add_argument("--storage", type=Path, default=Path("runs"), help="where the search kept its state")
    parser.add_argument("--allow-joint-study", action="store_true",
                        help="rerun a joint study's best too (the report then decides nothing on it)")
    parser.add_argument("--mlflow-uri", default=None, help="tracking URI (default: sqlite in --storage)")
    add_ray_arguments(parser)
    parser.add_argument("--gpus-per-trial", type=int, default=None)
    parser.add_argument("--workers-per-trial", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None, metavar="N",
                        help="checkpoint (and report) every N optimiser steps, so a failed worker resumes mid-epoch "
                             "(default: as the trial was searched)")
    args = parser.parse_args(argv)
    if args.seeds < 0:
        raise UsageError("--seeds must be >= 0 (0: score the trials' own checkpoints only)")
    if args.eval_every is not None and args.eval_every < 1:
        raise UsageError("--eval-every must be >= 1")
    workers = validate.planned_workers(args)  # flags no plan could meet fail before MLflow is read
    storage = args.storage.resolve()
    uri = args.mlflow_uri or tracking.default_uri(storage)
    experiment = load_experiment(uri, args.experiment)
    chosen = best_configs(experiment, set(args.space), args.allow_joint_study)
    every = {"eval_every": args.eval_every} if args.eval_every else {}  # reports change no training step
    plans = plan_reruns(chosen, args.seeds, lambda params: {**TrainConfig.from_params(params).to_dict(), **every})
    reused = sum(p.checkpoint is not None for p in plans)
    check_batch_splits(plans, workers)
    print(f"{len(plans) - reused} rerun(s) to train, {reused} trial checkpoint(s) to score", file=sys.stderr)
    if not plans:
        return []
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    import ray
    results = []
    try:
        cluster = start_ray(args.address, args.full_ray_dashboard)
        resources = resource_plan.plan(cluster.get("CPU", 1), cluster.get("GPU", 0), args.gpus_per_trial,
                                       args.workers_per_trial, 1, cpus_per_gpu(), largest_gpu_node())
        if resources.note:
            print(f"note: {resources.note}", file=sys.stderr)
        check_batch_splits(plans, resources.num_workers)  # the plan of a cluster is known only now
        for plan in plans:
            config = {**plan.config, "num_threads": resources.cpus_per_worker}
            TrainConfig.from_dict(config)
            metrics = (score_own_checkpoint(plan, resources) if plan.checkpoint else
                       train_and_test(config, resources, storage / "reruns", f"rerun-{plan.trial.trial_id}-seed{plan.seed}"))
            run_id = log_rerun(client, experiment.experiment_id, plan, metrics)
            results.append({"space": plan.space, "optimizer": plan.trial.optimizer, "seed": plan.seed,
                            "source_trial": plan.trial.trial_id, "reused_checkpoint": plan.checkpoint is not None,
                            "run_id": run_id, **{k: v for k, v in metrics.items() if k.startswith("test_")
                                                 and k != "test_per_query"}})
            how = "its trial's checkpoint" if plan.checkpoint else "trained"
            print(f"{plan.space} {plan.trial.optimizer} seed {plan.seed} ({how}): test nDCG@10 {metrics['test_ndcg_at_10']:.4f} "
                  f"MAP {metrics['test_map']:.4f} MRR@10 {metrics['test_mrr_at_10']:.4f}")
    finally:
        ray.shutdown()
    return results


if __name__ == "__main__":
    main()
