"""A real MLflow store (SQLite under a test's tmp_path) written by hand: searches, trials and reruns
tagged as search.run and search.rerun tag them."""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from analysis.runs import Experiment, load_experiment


def wait_healthy(proc, url: str, log: Path, seconds: float) -> None:
    """Until an MLflow server answers on url/health; fails with its log if it exits or never answers."""
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no /health within {seconds} s:\n" + log.read_text()[-2000:]
        time.sleep(0.5)


class Store:
    def __init__(self, tmp_path: Path, name: str = "study"):
        self.tmp, self.name = tmp_path, name
        self.uri = f"sqlite:///{tmp_path}/mlflow.db"
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self.client.create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())

    def _run(self, tags: dict, params: dict, metrics=(), status: str = "FINISHED") -> str:
        run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        self.client.log_batch(run_id, metrics=list(metrics), params=[Param(k, str(v)) for k, v in params.items()])
        self.client.set_terminated(run_id, status)
        return run_id

    def search(self, optimizer: str | None = "adamw", status: str = "FINISHED", space: str = "minilm",
               **params) -> str:
        """A search parent; optimizer None is a joint study. params override folds/test_fold/data/epochs."""
        tags = {"role": "search", "space": space, **({"optimizer": optimizer} if optimizer else {})}
        return self._run(tags, {"folds": 5, "test_fold": 0, "data": "/data/dl20", "epochs": 2, **params},
                         status=status)

    def trial(self, parent: str, trial_id: str, optimizer: str, ndcg: list[float], epochs=None,
              status: str = "FINISHED", tags: dict | None = None, params: dict | None = None) -> str:
        """ndcg[i] logged at epochs[i] (default 1, 2, ...); a repeated epoch is a re-report."""
        epochs = epochs or list(range(1, len(ndcg) + 1))
        metrics = [Metric("ndcg_at_10", v, 1000 + i, e) for i, (e, v) in enumerate(zip(epochs, ndcg))]
        return self._run({"mlflow.parentRunId": parent, "role": "trial", "trial_id": trial_id, **(tags or {})},
                         {"optimizer": optimizer, "lr": 1e-5, "split_seed": 0, **(params or {})}, metrics, status)

    def rerun(self, parent: str, source_trial: str, optimizer: str, seed: int,
              per_query: dict[str, dict[str, float]], metrics: dict | None = None) -> str:
        means = {f"test_{m}": sum(q[m] for q in per_query.values()) / len(per_query)
                 for m in next(iter(per_query.values()))}
        run_id = self._run({"mlflow.parentRunId": parent, "role": "rerun", "optimizer": optimizer,
                            "seed": str(seed), "source_trial": source_trial},
                           {"optimizer": optimizer, "seed": seed},
                           [Metric(k, v, 1000, 2) for k, v in {**means, **(metrics or {})}.items()])
        path = self.tmp / "per_query.json"
        path.write_text(json.dumps(per_query))
        self.client.log_artifact(run_id, str(path))
        return run_id

    def load(self) -> Experiment:
        return load_experiment(self.uri, self.name)
