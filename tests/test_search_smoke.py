"""End to end: the real CLI, real Ray (local), real Optuna, real MLflow store, tiny model."""
import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from search.run import main


def test_smoke_search_with_paper_preset_two_workers(tmp_path):
    out = tmp_path / "best.json"
    summary = main(["--space", "minilm", "--smoke-test", "--trials", "1", "--preset", "paper", "--workers-per-trial",
                    "2", "--storage", str(tmp_path / "runs"), "--output-json", str(out), "--experiment", "smoke"])
    saved = json.loads(out.read_text())
    assert saved["best"]["checkpoint"] and saved["best"]["config"]["optimizer"] in ("adamw", "lion")
    # One searched trial beside the paper's two reference settings (AdamW and Lion at lr 2e-5).
    assert len(saved["trials"]) == 3 and summary["first_stage"]["num_queries"] == 6
    references = [t for t in saved["trials"] if t["reference"]]
    assert sorted(t["config"]["optimizer"] for t in references) == ["adamw", "lion"]
    assert all(t["config"]["lr"] == 2e-5 and t["config"]["scheduler"] == "constant" for t in references)
    client = MlflowClient(saved["mlflow_uri"])
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == saved["studies"][0]["parent_run_id"]]
    assert len(parents) == 1 and len(children) == 3 and parents[0].data.tags["role"] == "search"
    assert sum(c.data.tags.get("reference") == "preset" for c in children) == 2
    assert all(r.info.status == "FINISHED" for r in runs)
    assert saved["beats_first_stage"] == (saved["best"]["metrics"]["ndcg_at_10"] > saved["first_stage"]["ndcg_at_10"])
    for child in children:
        assert {"ndcg_at_10", "map", "mrr_at_10", "train_loss", "lr", "pairs_per_s", "tokens_per_s",
                "step_time_s", "model_ndcg_at_10", "first_stage_weight"} <= set(child.data.metrics)
        assert child.data.tags["gpu"].startswith("none: no GPU")  # CPU: no GPU metrics, and a tag says why
        assert "gpu_util_mean" not in child.data.metrics and child.data.tags["role"] == "trial"
        assert child.data.params["optimizer"] in ("adamw", "lion") and "checkpoint_path" in child.data.tags
        history = client.get_metric_history(child.info.run_id, "ndcg_at_10")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
    assert parents[0].data.params["space"] == "minilm" and "git_commit" in parents[0].data.tags
    # The best model: its card and training max_length in model/, and an MLflow pyfunc on the parent run.
    model_dir = Path(saved["best"]["checkpoint"]) / "model"
    assert "library_name: sentence-transformers" in (model_dir / "README.md").read_text()
    assert json.loads((model_dir / "tokenizer_config.json").read_text())["model_max_length"] == 48
    assert saved["best_model_uri"] == f"runs:/{parents[0].info.run_id}/best_model"
    assert "best_model/MLmodel" in {a.path for a in client.list_artifacts(parents[0].info.run_id, "best_model")}
