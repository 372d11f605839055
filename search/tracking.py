"""MLflow bookkeeping, done by the driver: one parent run per search, one child run per trial.

The driver sees every trial's start, per-epoch result, end and error through Tune's callbacks,
so a trial whose workers are killed still has its run closed with the right status; runs left
RUNNING by a driver that was killed are closed on the next run of that experiment (--resume or not).
"""
from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient
from ray import tune

from trainables.errors import UsageError
from trainables.paths import check_sqlite

EPOCH_METRICS = ("ndcg_at_10", "map", "mrr_at_10", "recall_at_100", "train_loss", "lr", "pairs_per_s",
                 "tokens_per_s", "step_time_s", "train_s", "eval_s", "mfu", "gpu_util_mean", "gpu_mem_peak_gb",
                 "energy_kj", "gpu_power_mean_w", "sm_clock_mean_mhz", "first_stage_weight")
PARENT_TAG = "mlflow.parentRunId"


def default_uri(storage: Path) -> str:
    return f"sqlite:///{(storage / 'mlflow.db').resolve()}"


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast, before Ray starts, on a tracking URI that cannot work: an HTTP server that does
    not answer (MLflow's own client would retry for minutes) or a SQLite file in a missing folder."""
    if uri.startswith(("http://", "https://")):
        import requests
        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()
        except requests.RequestException as err:
            raise UsageError(f"MLflow tracking URI {uri!r} is unreachable ({type(err).__name__}); "
                             f"start the server (cluster/mlflow_server.sh) or fix --mlflow-uri") from None
    elif uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):].split("?")[0])
        if not path.parent.is_dir():
            raise UsageError(f"MLflow tracking URI {uri!r}: folder {path.parent} does not exist")
        check_sqlite(path, uri)


def connect(uri: str, experiment: str, storage: Path) -> tuple[MlflowClient, str]:
    """(client, experiment id), creating the experiment with artifacts under storage when new."""
    client = MlflowClient(tracking_uri=uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return client, found.experiment_id
        location = (storage / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
        return client, client.create_experiment(experiment, artifact_location=location)
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
    """Tune callback mirroring each trial into a nested MLflow run."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, fixed_params: dict,
                 references: list | None = None):
        self.uri, self.experiment_id, self.parent_run_id = uri, experiment_id, parent_run_id
        self.fixed_params, self.references = fixed_params, references or []
        self.run_ids: dict[str, str] = {}
        self.best: dict[str, tuple[float, int]] = {}
        self._client = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:  # created lazily: callbacks are pickled when the Tuner is saved
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def __getstate__(self):
        return {**self.__dict__, "_client": None}

    def run_id(self, trial) -> str:
        if trial.trial_id not in self.run_ids:
            found = self.client.search_runs(
                [self.experiment_id], f"tags.trial_id = '{trial.trial_id}' and tags.`{PARENT_TAG}` = "
                f"'{self.parent_run_id}'", max_results=1)
            if found:
                self.run_ids[trial.trial_id] = found[0].info.run_id
                self.client.update_run(found[0].info.run_id, status="RUNNING")
            else:
                tags = {PARENT_TAG: self.parent_run_id, "trial_id": trial.trial_id, "role": "trial"}
                if is_reference(trial.config, self.references):
                    tags["reference"] = "preset"
                run = self.client.create_run(self.experiment_id, run_name=str(trial), tags=tags)
                self.run_ids[trial.trial_id] = run.info.run_id
                params = {**self.fixed_params, **trial.config}
                for key, value in params.items():
                    self.client.log_param(run.info.run_id, key, value)
        return self.run_ids[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id, epoch = self.run_id(trial), int(result.get("epoch", result.get("training_iteration", 0)))
        for name in EPOCH_METRICS:
            if isinstance(result.get(name), (int, float)):
                self.client.log_metric(run_id, name, float(result[name]), step=epoch)
        if isinstance(result.get("gpu"), str):  # the GPU's name, or "none: <why there are no GPU metrics>"
            self.client.set_tag(run_id, "gpu", result["gpu"])
        if "checkpoint_path" in result:
            self.client.set_tag(run_id, "checkpoint_path", result["checkpoint_path"])
        best = self.best.get(trial.trial_id)
        if "ndcg_at_10" in result and (best is None or result["ndcg_at_10"] > best[0]):
            self.best[trial.trial_id] = (result["ndcg_at_10"], epoch)
            self.client.set_tag(run_id, "best_epoch", epoch)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.client.set_terminated(self.run_id(trial), "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.client.set_terminated(self.run_id(trial), "FAILED")

    def close_open(self, status: str) -> None:
        for run_id in self.run_ids.values():
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, status)
