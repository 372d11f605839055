"""Load one MLflow experiment of searches into plain Python objects, for the report.

Runs are sorted by their `role` tag: `search` parents, `trial` and `rerun` children (linked by
mlflow.parentRunId). Params stay the strings MLflow stores; numbers are parsed where they are used.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from trainables.errors import UsageError
from trainables.paths import check_sqlite

PARENT_TAG = "mlflow.parentRunId"
PER_QUERY_ARTIFACT = "per_query.json"


@dataclass
class Trial:
    run_id: str
    trial_id: str
    status: str
    params: dict[str, str]
    tags: dict[str, str]
    history: dict[str, list[tuple[float, float]]]  # metric -> [(epoch, value)], epochs ascending, fractional mid-epoch

    @property
    def optimizer(self) -> str:
        return self.params.get("optimizer", "?")

    @property
    def epochs(self) -> int | float:
        """The highest epoch with a dev score (fractional for a trial stopped mid-epoch): below the search's epochs when ASHA stopped the trial.
        Not a count of logged epochs: a resumed trial may miss one or log its last one twice."""
        return max((epoch for epoch, _ in self.history.get("ndcg_at_10", [])), default=0)

    def final(self, metric: str) -> float | None:
        values = self.history.get(metric)
        return values[-1][1] if values else None

    def best_epoch(self, metric: str = "ndcg_at_10") -> tuple[int | float, float] | None:
        values = self.history.get(metric)
        return max(values, key=lambda pair: pair[1]) if values else None


@dataclass
class Rerun:
    run_id: str
    status: str
    optimizer: str
    seed: str
    source_trial: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]] | None  # None when the run has no per_query.json


@dataclass
class Search:
    run_id: str
    status: str
    space: str
    optimizer: str | None  # set only when the search was restricted to one optimizer
    params: dict[str, str]
    tags: dict[str, str]
    trials: list[Trial] = field(default_factory=list)
    reruns: list[Rerun] = field(default_factory=list)

    @property
    def data(self) -> str:
        # Older searches recorded the data directory as a tag only.
        return self.params.get("data") or self.tags.get("data") or "unknown data"

    @property
    def max_epochs(self) -> int | None:
        return int(self.params["epochs"]) if self.params.get("epochs", "").isdigit() else None


@dataclass
class Experiment:
    name: str
    experiment_id: str
    uri: str
    searches: list[Search]


def _check_local_store(uri: str) -> None:
    """A missing SQLite file or store directory is a typo: MLflow would silently create an empty one."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):].split("?")[0]
        if path and path != ":memory:":
            if not Path(path).is_file():
                raise UsageError(f"MLflow tracking URI {uri!r}: no database at {path}")
            check_sqlite(path, uri)
    elif uri.startswith("file:"):
        path = uri[len("file://"):] if uri.startswith("file://") else uri[len("file:"):]
        if not Path(path).is_dir():
            raise UsageError(f"MLflow tracking URI {uri!r}: no store directory at {path}")


def _connect(uri: str, name: str) -> tuple[MlflowClient, str]:
    _check_local_store(uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        found = client.get_experiment_by_name(name)
    except Exception as err:  # network, auth or store errors: the user's URI is the cause
        raise UsageError(f"cannot read MLflow tracking URI {uri!r}: {type(err).__name__}: {str(err)[:200]}") from None
    if found is None:
        raise UsageError(f"no MLflow experiment named {name!r} at {uri}")
    return client, found.experiment_id


def _all_runs(client: MlflowClient, experiment_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _role(run) -> str | None:
    tags = run.data.tags
    if "role" in tags:
        return tags["role"]
    # Searches written before the role tag existed: parents carry `space`, trials `trial_id`.
    if PARENT_TAG not in tags and "space" in tags:
        return "search"
    if PARENT_TAG in tags and "trial_id" in tags:
        return "trial"
    return None


def _history(client: MlflowClient, run) -> dict[str, list[tuple[int, float]]]:
    history = {}
    for key in run.data.metrics:
        by_step = {}
        # A resumed trial can log an epoch twice; the later value is the one its checkpoint holds.
        for metric in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp)):
            by_step[metric.step] = metric.value
        history[key] = sorted(by_step.items())
    return history


def _per_query(client: MlflowClient, run_id: str) -> dict[str, dict[str, float]] | None:
    if PER_QUERY_ARTIFACT not in {item.path for item in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, PER_QUERY_ARTIFACT, tmp)
        raw = json.loads(Path(path).read_text())
    return {str(qid): {name: float(value) for name, value in scores.items()} for qid, scores in raw.items()}


def by_epoch(history: dict[str, list[tuple[int, float]]]) -> dict[str, list[tuple[float, float]]]:
    """A trial with eval_every logs at optimiser steps, with its `epoch` metric beside: key every
    metric by that epoch (fractional mid-epoch), as the trials without eval_every are."""
    epochs = {step: int(epoch) if epoch == int(epoch) else epoch for step, epoch in history.get("epoch", [])}
    return {key: [(epochs[step], value) for step, value in values if step in epochs]
            for key, values in history.items()}


def _trial(client: MlflowClient, run) -> Trial:
    tags, params = run.data.tags, dict(run.data.params)
    history = _history(client, run)
    if params.get("eval_every", "None") != "None":
        history = by_epoch(history)
    return Trial(run.info.run_id, tags.get("trial_id", run.info.run_id[:8]), run.info.status,
                 params, dict(tags), history)


def _rerun(client: MlflowClient, run) -> Rerun:
    tags, params = run.data.tags, dict(run.data.params)
    return Rerun(run.info.run_id, run.info.status, tags.get("optimizer") or params.get("optimizer", "?"),
                 tags.get("seed", "?"), tags.get("source_trial", "?"), params, dict(tags),
                 dict(run.data.metrics), _per_query(client, run.info.run_id))


def load_experiment(uri: str, name: str) -> Experiment:
    """Every search of the experiment with its trials and reruns; UsageError for a bad URI or name."""
    client, experiment_id = _connect(uri, name)
    runs = _all_runs(client, experiment_id)
    if not runs:
        raise UsageError(f"MLflow experiment {name!r} at {uri} has no runs")
    runs.sort(key=lambda r: r.info.start_time or 0)
    searches = {}
    for run in runs:
        if _role(run) == "search":
            tags = run.data.tags
            searches[run.info.run_id] = Search(run.info.run_id, run.info.status,
                                               tags.get("space") or run.data.params.get("space", "?"),
                                               tags.get("optimizer"), dict(run.data.params), dict(tags))
    for run in runs:
        parent = searches.get(run.data.tags.get(PARENT_TAG, ""))
        role = _role(run)
        if parent is not None and role == "trial":
            parent.trials.append(_trial(client, run))
        elif parent is not None and role == "rerun":
            parent.reruns.append(_rerun(client, run))
    return Experiment(name, experiment_id, uri, list(searches.values()))
