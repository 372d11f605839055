"""MLflow bookkeeping, done by the driver: one parent run per search, one child run per trial.

The driver sees every trial's start, every report (per epoch, or every eval_every steps), end and
error through Tune's callbacks, so a trial whose workers are killed still has its run closed with the
right status; runs left RUNNING by a driver that was killed are closed on the next run of that
experiment (--resume or not). MLflow's metric step is the epoch, or with eval_every the optimiser step.
The callbacks only queue their writes (search/tracking_queue.py): a server that is down stops no trial.
"""
from __future__ import annotations

import time
from pathlib import Path

from mlflow.tracking import MlflowClient
from ray import tune

from search import tracking_queue
from search.tracking_uri import check_reachable, default_uri  # noqa: F401 (their old home)
from trainables.errors import UsageError

# ndcg_at_10 etc. score the final ranking (interpolated with the first stage); model_*: the model alone.
EPOCH_METRICS = ("ndcg_at_10", "map", "mrr_at_10", "recall_at_100", "model_ndcg_at_10", "model_map",
                 "model_mrr_at_10", "train_loss", "lr", "pairs_per_s",
                 "tokens_per_s", "step_time_s", "train_s", "eval_s", "mfu", "gpu_util_mean", "gpu_mem_peak_gb",
                 "energy_kj", "gpu_power_mean_w", "sm_clock_mean_mhz", "first_stage_weight")
PARENT_TAG = "mlflow.parentRunId"
# MLflow 3's UI opens an experiment without this tag on its GenAI traces page; this kind ("Machine
# learning" in its UI) opens the runs table. No MLflow tag chooses default metric columns.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def connect(uri: str, experiment: str, storage: Path) -> tuple[MlflowClient, str]:
    """(client, experiment id), creating the experiment with artifacts under storage when new."""
    client = MlflowClient(tracking_uri=uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            for key, value in EXPERIMENT_KIND.items():
                if key not in found.tags:  # experiments made before the tag, or by the UI; a user's choice stays
                    client.set_experiment_tag(found.experiment_id, key, value)
            return client, found.experiment_id
        location = (storage / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
        return client, client.create_experiment(experiment, artifact_location=location, tags=EXPERIMENT_KIND)
    except Exception as err:  # network, auth or store errors: the user's URI is the cause
        raise UsageError(f"cannot use MLflow tracking URI {uri!r}: {type(err).__name__}: {str(err)[:200]}") from None


def close_children(client: MlflowClient, experiment_id: str, parent_id: str, status: str = "KILLED") -> int:
    """Give every still-RUNNING child of `parent_id` a final status (its trial was interrupted)."""
    stale = client.search_runs([experiment_id], f"attributes.status = 'RUNNING' and tags.`{PARENT_TAG}` = "
                               f"'{parent_id}'", max_results=10_000)
    for run in stale:
        client.set_terminated(run.info.run_id, status)
    return len(stale)


def close_search(client: MlflowClient, experiment_id: str, parent_id: str, status: str = "KILLED") -> None:
    """A search whose driver died leaves its runs RUNNING; close the parent and its children."""
    close_children(client, experiment_id, parent_id, status)
    if client.get_run(parent_id).info.status == "RUNNING":
        client.set_terminated(parent_id, status)


def is_reference(config: dict, references: list[dict]) -> bool:
    """Whether a trial's config is one of the preset reference configs (all their keys equal)."""
    return any(all(config.get(key) == value for key, value in ref.items()) for ref in references or [])


class TrialRuns(tune.Callback):
    """Tune callback mirroring each trial into a nested MLflow run. It only queues the writes
    (search/tracking_queue.py): a callback that waited on the server would hold up every trial."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, fixed_params: dict,
                 references: list | None = None):
        self.uri, self.experiment_id, self.parent_run_id = uri, experiment_id, parent_run_id
        self.fixed_params, self.references = fixed_params, references or []
        self.best: dict[str, tuple[float, int]] = {}
        self._opened: set[str] = set()

    @property
    def queue(self) -> tracking_queue.TrackingQueue:
        return tracking_queue.for_uri(self.uri)  # not an attribute: callbacks are pickled with the Tuner

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_opened"}

    def __setstate__(self, state):
        # A restored driver opens its trials' runs again: they are found by tag trial_id.
        self.__dict__.update({k: v for k, v in state.items() if k not in ("run_ids", "_client")}, _opened=set())

    def key(self, trial) -> str:
        """The trial's run, as named in queued records (the queue maps it to the run's id)."""
        key = f"trial:{self.parent_run_id}:{trial.trial_id}"
        if trial.trial_id not in self._opened:
            self._opened.add(trial.trial_id)
            tags = {PARENT_TAG: self.parent_run_id, "trial_id": trial.trial_id, "role": "trial"}
            if is_reference(trial.config, self.references):
                tags["reference"] = "preset"
            self.queue.put({"op": "open", "key": key, "experiment_id": self.experiment_id, "run_name": str(trial),
                            "match": {"trial_id": trial.trial_id, PARENT_TAG: self.parent_run_id}, "tags": tags,
                            "params": {k: str(v) for k, v in {**self.fixed_params, **trial.config}.items()}})
        return key

    def on_trial_start(self, iteration, trials, trial, **info):
        self.key(trial)

    def mlflow_step(self, result: dict) -> int:
        """The optimiser step with eval_every (mid-epoch reports, with a fractional `epoch` metric
        beside), else the epoch, as before eval_every existed."""
        if self.fixed_params.get("eval_every"):
            return int(result["step"])
        return int(result.get("epoch", result.get("training_iteration", 0)))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key, step = self.key(trial), self.mlflow_step(result)
        epoch = result.get("epoch", step)
        now = int(time.time() * 1000)  # when it was measured, however late it is written
        names = EPOCH_METRICS + (("epoch",) if self.fixed_params.get("eval_every") else ())
        metrics = [[name, float(result[name]), now, step] for name in names
                   if isinstance(result.get(name), (int, float))]
        tags = {}
        if isinstance(result.get("gpu"), str):  # the GPU's name, or "none: <why there are no GPU metrics>"
            tags["gpu"] = result["gpu"]
        if "checkpoint_path" in result:
            tags["checkpoint_path"] = str(result["checkpoint_path"])
        best = self.best.get(trial.trial_id)
        if "ndcg_at_10" in result and (best is None or result["ndcg_at_10"] > best[0]):
            self.best[trial.trial_id] = (result["ndcg_at_10"], epoch)
            tags["best_epoch"] = str(epoch)
        self.queue.put({"op": "log", "key": key, "metrics": metrics, "tags": tags})

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.queue.put({"op": "terminate", "key": self.key(trial), "status": "FINISHED"})

    def on_trial_error(self, iteration, trials, trial, **info):
        self.queue.put({"op": "terminate", "key": self.key(trial), "status": "FAILED"})
