"""The study chain on CPU: search --compare-optimizers → search.rerun with 2 seeds → analysis.report."""
import json

from mlflow.tracking import MlflowClient

from analysis.report import main as report
from search.rerun import main as rerun
from search.run import main as search


def test_compare_optimizers_then_rerun_then_report(tmp_path):
    storage = tmp_path / "runs"
    summary = search(["--space", "minilm", "--smoke-test", "--compare-optimizers", "--trials", "1",
                      "--storage", str(storage), "--experiment", "chain"])
    assert [s["optimizers"] for s in summary["studies"]] == [["adamw"], ["lion"]]  # one study each, equal budgets
    assert all(len(s["trials"]) == 1 and s["status"] == "FINISHED" for s in summary["studies"])

    reruns = rerun(["--experiment", "chain", "--seeds", "2", "--storage", str(storage)])
    assert sorted((r["optimizer"], r["seed"]) for r in reruns) == [("adamw", 0), ("adamw", 1), ("lion", 0), ("lion", 1)]
    assert all(0 <= r["test_ndcg_at_10"] <= 1 and r["test_num_queries"] > 0 for r in reruns)
    assert rerun(["--experiment", "chain", "--seeds", "2", "--storage", str(storage)]) == []  # done ones are skipped

    client = MlflowClient(summary["mlflow_uri"])
    experiment = client.get_experiment_by_name("chain")
    runs = client.search_runs([experiment.experiment_id])
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("role") == "search"}
    assert sorted(p.data.tags["optimizer"] for p in parents.values()) == ["adamw", "lion"]
    for run in (r for r in runs if r.data.tags.get("role") == "rerun"):
        parent = parents[run.data.tags["mlflow.parentRunId"]]
        assert parent.data.tags["optimizer"] == run.data.tags["optimizer"]  # under its own search
        assert run.info.status == "FINISHED" and "test_ndcg_at_10" in run.data.metrics
        per_query = json.loads(open(client.download_artifacts(run.info.run_id, "per_query.json", str(tmp_path))).read())
        assert len(per_query) == run.data.metrics["test_num_queries"]

    out = tmp_path / "report"
    report(["--experiment", "chain", "--mlflow-uri", summary["mlflow_uri"], "--out", str(out)])
    text = (out / "report.md").read_text()
    assert "AdamW" in text and "Lion" in text and "0.7225" in text  # the paper's figure beside ours
    assert (out / "report.html").is_file() and list(out.glob("*.png"))
    for parent_id in parents:
        assert any(a.path == "report" for a in client.list_artifacts(parent_id))
