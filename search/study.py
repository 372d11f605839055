"""One study: an Optuna TPE search over a space (all optimizers, or one), run by Ray Tune with ASHA,
mirrored into one MLflow parent run with a child run per trial. Fresh or resumed.

A resumed study is restored with Tuner.restore, which brings back Tune's trial table, the
Optuna searcher's history and the MLflow callback (pickled with the Tuner); unfinished trials
continue from their last checkpoint (an epoch end, or with eval_every a step mid-epoch).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

from search import tracking, tracking_queue

METRIC, MODE = "ndcg_at_10", "max"
# "epoch", not training_iteration: a resumed trial restarts Tune's iteration count, while its
# reported epoch continues from the checkpoint. With eval_every, trials report mid-epoch and
# ASHA counts optimiser steps ("step") instead.
TIME_ATTR = "epoch"
SUMMARY_METRICS = ("ndcg_at_10", "map", "mrr_at_10", "recall_at_100", "model_ndcg_at_10", "first_stage_weight",
                   "train_loss", "pairs_per_s")


@dataclass
class Study:
    """What a study needs beyond the space: its optimizers, budget, names and references."""
    optimizers: tuple
    trials: int
    tune_name: str
    references: list  # searched-key configs evaluated first (a preset's), on top of `trials`
    seed: int
    max_failures: int
    searcher: str = "tpe"  # "tpe": Optuna TPE + ASHA; "random": random sampling, every trial runs all epochs
    total_steps: int | None = None  # optimiser steps of a whole trial: the budget when base sets eval_every
    optuna_storage: str | None = None  # SQLAlchemy URL of the Optuna study (None: in memory)
    optuna_study: str | None = None  # the Optuna study's name (default tune_name; an extension keeps its study's)
    earlier: list = field(default_factory=list)  # summary rows of the trials before an --extend


def budget(base: dict, total_steps: int | None) -> tuple[str, int]:
    """(time_attr, max_t) of ASHA and the searcher: epochs, or optimiser steps when trials report
    every eval_every steps (an epoch-end rung would come hours late on MS MARCO)."""
    if base.get("eval_every"):
        return "step", total_steps
    return TIME_ATTR, base["epochs"]


def build_tuner(space, study: Study, base: dict, resources, storage: Path, callbacks):
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from search import optuna_store
    from search.searcher import PrunedAwareOptunaSearch, early_stopping
    from search.trainable import trainable
    from spaces.base import optuna_params, train_config

    # A partial of the space's bound method pickles, so Tune can save the searcher for --resume.
    define_by_run = functools.partial(space.suggest, optimizers=study.optimizers)
    # metric and mode go to the searcher and scheduler themselves: ConcurrencyLimiter does not pass
    # them on to a define-by-run OptunaSearch.
    sampler = optuna_store.sampler(study.searcher, study.seed, study.trials, resources.concurrency)
    # random: the baseline TPE + ASHA must beat at the same trial budget; ASHA's first rung at half
    # the budget or later (search/searcher.py).
    scheduler = FIFOScheduler() if study.searcher == "random" else early_stopping(
        METRIC, MODE, *budget(base, study.total_steps))
    # ASHA-stopped trials reach TPE as PRUNED, not as finished scores.
    time_attr, max_t = budget(base, study.total_steps)
    optuna_storage = optuna_store.open_storage(study.optuna_storage) if study.optuna_storage else None
    searcher = PrunedAwareOptunaSearch(space=define_by_run, metric=METRIC, mode=MODE, sampler=sampler,
                                       points_to_evaluate=[optuna_params(c) for c in study.references] or None,
                                       time_attr=time_attr, max_t=max_t, to_config=train_config, storage=optuna_storage,
                                       study_name=study.optuna_study or study.tune_name)
    reporter = tune.CLIReporter(
        parameter_columns=["optimizer", "lr", "weight_decay", "scheduler"],
        metric_columns=["epoch", "step", "ndcg_at_10", "model_ndcg_at_10", "map", "mrr_at_10", "train_loss",
                        "pairs_per_s"],
        max_report_frequency=30)
    return tune.Tuner(
        trainable(base, resources, str((storage / "trials").resolve()), study.max_failures),
        tune_config=tune.TuneConfig(
            num_samples=study.trials + len(study.references),
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=resources.concurrency),
            scheduler=scheduler),
        run_config=tune.RunConfig(name=study.tune_name, storage_path=str((storage / "tune").resolve()),
                                  callbacks=callbacks, progress_reporter=reporter, verbose=1),
    )


def restore_tuner(base: dict, resources, storage: Path, study: Study):
    from ray import tune

    from search.trainable import trainable
    path = str((storage / "tune" / study.tune_name).resolve())
    if not tune.Tuner.can_restore(path):
        return None
    return tune.Tuner.restore(path, trainable=trainable(base, resources, str((storage / "trials").resolve()),
                                                        study.max_failures),
                              resume_unfinished=True, resume_errored=True)


def open_parent(client, experiment_id: str, space, study: Study, params: dict, tags: dict) -> str:
    optimizer_tag = {"optimizer": study.optimizers[0]} if len(study.optimizers) == 1 else {}
    name = f"search-{space.name}" + (f"-{study.optimizers[0]}" if optimizer_tag else "")
    parent = client.create_run(experiment_id, run_name=name, tags={
        **tags, "role": "search", "space": space.name, "tune_name": study.tune_name, **optimizer_tag})
    from mlflow.entities import Param
    values = {**params, "space": space.name, "trials": study.trials, "optimizers": ",".join(study.optimizers),
              "reference_trials": len(study.references)}
    client.log_batch(parent.info.run_id, params=[Param(k, str(v)) for k, v in values.items()])  # one request, not ~20
    return parent.info.run_id


def run(space, study: Study, base: dict, resources, storage: Path, uri: str, experiment_id: str,
        parent_id: str, resume: bool) -> dict:
    """Fit (or finish) the study; returns its summary. Closes every MLflow run it opened (queued:
    search/tracking_queue.py, so a tracking server that is down holds up nothing)."""
    tuner = restore_tuner(base, resources, storage, study) if resume else None
    if tuner is None:
        trial_runs = tracking.TrialRuns(uri, experiment_id, parent_id, fixed_params=base,
                                        references=study.references)
        tuner = build_tuner(space, study, base, resources, storage, [trial_runs])
    else:
        print(f"resuming study {study.tune_name} from {storage / 'tune' / study.tune_name}")
    status = "FAILED"
    try:
        results = tuner.fit()
        rows = study.earlier + summarize(results, study.references)
        best = choose_best(rows, base["epochs"])
        # Tune returns (rather than raises) when the driver is interrupted: count finished trials.
        interrupted = results.num_terminated + results.num_errors < study.trials + len(study.references)
        log_best(tracking_queue.for_uri(uri), parent_id, best)
        status = "KILLED" if interrupted else ("FINISHED" if best else "FAILED")
        return {"optimizers": list(study.optimizers), "tune_name": study.tune_name, "parent_run_id": parent_id,
                "status": status, "best": best, "trials": rows}
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        queue = tracking_queue.for_uri(uri)
        queue.put({"op": "close_children", "key": parent_id, "experiment_id": experiment_id, "status": "KILLED"})
        queue.put({"op": "terminate", "key": parent_id, "status": status})


def summarize(results, references) -> list[dict]:
    rows = []
    for result in results:
        metrics = result.metrics or {}
        epochs, searched = metrics.get("epoch"), dict(result.config)
        rows.append({
            "trial_id": metrics.get("trial_id") or (Path(result.path).name.split("_")[2] if result.path else "?"),
            "config": searched, "reference": tracking.is_reference(searched, references),
            "status": "ERROR" if result.error else "TERMINATED",
            "epochs": epochs, "checkpoint": metrics.get("checkpoint_path"),
            "metrics": {k: metrics.get(k) for k in SUMMARY_METRICS}})
    return rows


def choose_best(rows: list[dict], epochs: int) -> dict | None:
    """Highest final-epoch nDCG@10 among trials that ran every epoch: an early-stopped trial's
    last epoch is not a final checkpoint. The best epoch is shown in MLflow, never used here."""
    scored = [r for r in rows if r["metrics"]["ndcg_at_10"] is not None]
    complete = [r for r in scored if r["epochs"] == epochs]
    return max(complete or scored, key=lambda r: r["metrics"]["ndcg_at_10"], default=None)


def log_best(queue, parent_id: str, best: dict | None) -> None:
    if not best:
        return
    now = int(time.time() * 1000)
    queue.put({"op": "log", "key": parent_id, "tags": {"best_trial": best["trial_id"],
                                                       "best_checkpoint": best["checkpoint"] or ""},
               "metrics": [[f"best_{k}", float(v), now, 0] for k, v in best["metrics"].items() if v is not None]})
    # The model itself is logged once the search has finished, with its card (search/model_artifact.py).
