"""search/model_artifact.py on a real SQLite MLflow store: the best model logged as a pyfunc loads
back with mlflow.pyfunc.load_model, scores (query, passage) rows as we do, and can be registered."""
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from search.model_artifact import log_model, publish, save_pyfunc
from trainables.checkpoint import MODEL_DIR
from trainables.evaluate import rerank_scores
from tests.test_model_card import COLLECTION, PAIRS, QUERIES, saved_checkpoint


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri, client, client.create_run(experiment).info.run_id


def test_the_logged_pyfunc_loads_back_and_gives_our_scores(tiny_bert, tmp_path, store, monkeypatch):
    import mlflow
    uri, client, run_id = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # what load_model resolves runs:/ and models:/ with
    directory, model, tokenizer = saved_checkpoint(tiny_bert, tmp_path, max_length=16)
    ours = rerank_scores(model, tokenizer, PAIRS, QUERIES, COLLECTION, 16, 2, torch.device("cpu"))
    model_uri = log_model(client, run_id, save_pyfunc(directory / MODEL_DIR, tmp_path / "pyfunc"), register="reranker")
    df = pd.DataFrame({"query": [QUERIES[q] for q, _ in PAIRS], "passage": [COLLECTION[p] for _, p in PAIRS]})
    assert list(mlflow.pyfunc.load_model(model_uri).predict(df)) == pytest.approx(ours, abs=1e-5)
    assert list(mlflow.pyfunc.load_model("models:/reranker/1").predict(df)) == pytest.approx(ours, abs=1e-5)


def test_publish_writes_the_card_and_logs_on_the_best_study(tiny_bert, tmp_path, store):
    uri, client, run_id = store
    directory, _, _ = saved_checkpoint(tiny_bert, tmp_path)
    best = {"trial_id": "t1", "checkpoint": str(directory), "config": {"lr": 1e-5}, "metrics": {"ndcg_at_10": 0.5}}
    summaries = [{"best": None, "parent_run_id": "none"}, {"best": best, "parent_run_id": run_id}]
    base = {"model": str(tiny_bert), "data_dir": str(tmp_path), "max_length": 24}
    assert publish(summaries, base, {}, tmp_path / "pyfunc", client) == f"runs:/{run_id}/best_model"
    assert "| lr | 1e-05 |" in (directory / MODEL_DIR / "README.md").read_text()
    logged = {a.path for a in client.list_artifacts(run_id, "best_model")}
    assert "best_model/MLmodel" in logged and "best_model/artifacts" in logged


def test_a_registered_model_name_mlflow_would_refuse_is_a_usage_error():
    from search.model_artifact import check_name
    from trainables.errors import UsageError
    assert check_name("rerank-minilm") == "rerank-minilm"
    for bad in ("", "a/b", "a:b", "it's"):
        with pytest.raises(UsageError, match="--register-model"):
            check_name(bad)
