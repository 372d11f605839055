"""search.tracking's TrialRuns on a real MLflow store: which step a trial's metrics are logged at."""
from types import SimpleNamespace

from mlflow.tracking import MlflowClient

from search.tracking import TrialRuns, connect


def logged(tmp_path, fixed: dict, reports: list[dict]) -> tuple[MlflowClient, str]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment).info.run_id
    runs = TrialRuns(uri, experiment, parent, fixed_params=fixed)
    trial = SimpleNamespace(trial_id="t1", config={"lr": 1e-5})  # the two attributes of a Tune trial it reads
    for result in reports:
        runs.on_trial_result(0, [], trial, result)
    assert runs.queue.drain(60)  # the callbacks only queue their writes
    found = client.search_runs([experiment], "tags.trial_id = 't1'")
    return client, found[0].info.run_id


def test_with_eval_every_metrics_are_logged_at_optimiser_steps_with_the_epoch_beside(tmp_path):
    reports = [{"step": s, "epoch": s // 12 if s % 12 == 0 else s / 12, "ndcg_at_10": s / 100} for s in (5, 10, 12)]
    client, run_id = logged(tmp_path, {"epochs": 2, "eval_every": 5}, reports)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "ndcg_at_10")] == [(5, .05), (10, .1), (12, .12)]
    assert [m.value for m in client.get_metric_history(run_id, "epoch")] == [5 / 12, 10 / 12, 1]
    assert client.get_run(run_id).data.tags["best_epoch"] == "1"


def test_without_eval_every_metrics_are_logged_at_epochs_as_before(tmp_path):
    client, run_id = logged(tmp_path, {"epochs": 2}, [{"step": 12 * e, "epoch": e, "ndcg_at_10": e / 10} for e in (1, 2)])
    assert [m.step for m in client.get_metric_history(run_id, "ndcg_at_10")] == [1, 2]
    assert "epoch" not in client.get_run(run_id).data.metrics


def test_the_experiment_opens_in_mlflows_model_training_view(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client, experiment_id = connect(uri, "rerank-minilm", tmp_path)
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    older = client.create_experiment("older")  # made before the tag: it is set when the search connects
    assert connect(uri, "older", tmp_path)[1] == older
    assert client.get_experiment(older).tags["mlflow.experimentKind"] == "custom_model_development"
