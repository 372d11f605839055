"""search.rerun's plan, and the study chain on CPU: search --compare-optimizers → search.rerun with
2 new seeds beside each trial's own checkpoint → analysis.report."""
import json

from mlflow.tracking import MlflowClient

from analysis.report import main as report
from search.rerun import best_configs, plan_reruns
from search.rerun import main as rerun
from search.run import main as search
from tests.mlflow_store import Store
from trainables.config import TrainConfig


def test_the_trials_own_seed_is_scored_from_its_checkpoint_and_new_seeds_are_trained(tmp_path):
    checkpoint = tmp_path / "trials" / "t1" / "checkpoint_000001"
    (checkpoint / "model").mkdir(parents=True)
    (checkpoint / "model" / "config.json").write_text("{}")
    (checkpoint / "state.pt").write_bytes(b"")  # planning only checks that the checkpoint is there
    store = Store(tmp_path)
    fixed = {"model": "m", "data_dir": "d", "folds": 5}
    for optimizer, seed, path in (("adamw", 0, checkpoint), ("lion", 3, tmp_path / "gone")):
        parent = store.search(optimizer)
        store.trial(parent, f"{optimizer}1", optimizer, [0.5, 0.6], tags={"checkpoint_path": str(path)},
                    params={**fixed, "seed": seed})
    parent = next(s.run_id for s in store.load().searches if s.optimizer == "adamw")
    store.rerun(parent, "adamw1", "adamw", 1, {"q": {"ndcg_at_10": 0.5}})  # seed 1 finished before
    plans = plan_reruns(best_configs(store.load(), set()), 2, lambda p: TrainConfig.from_params(p).to_dict())
    planned = [(p.trial.optimizer, p.seed, p.checkpoint) for p in plans]
    # AdamW: its trial's seed 0 scored from the checkpoint, new seeds 1 (done already) and 2 trained;
    # Lion's checkpoint is gone, so only its new seeds 0 and 1 (not its own 3) are trained.
    assert planned == [("adamw", 0, str(checkpoint)), ("adamw", 2, None), ("lion", 0, None), ("lion", 1, None)]
    assert all(p.config["evaluate_test"] and p.config["seed"] == p.seed for p in plans)


def test_compare_optimizers_then_rerun_then_report(tmp_path):
    storage = tmp_path / "runs"
    summary = search(["--space", "minilm", "--smoke-test", "--compare-optimizers", "--trials", "1",
                      "--storage", str(storage), "--experiment", "chain"])
    assert [s["optimizers"] for s in summary["studies"]] == [["adamw"], ["lion"]]  # one study each, equal budgets
    assert all(len(s["trials"]) == 1 and s["status"] == "FINISHED" for s in summary["studies"])

    reruns = rerun(["--experiment", "chain", "--seeds", "2", "--storage", str(storage)])
    assert sorted((r["optimizer"], r["seed"], r["reused_checkpoint"]) for r in reruns) == [
        ("adamw", 0, True), ("adamw", 1, False), ("adamw", 2, False),
        ("lion", 0, True), ("lion", 1, False), ("lion", 2, False)]  # seed 0 is the search's own trial
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
    assert "| 0*, 1, 2 |" in text  # seed 0 is the trial's own checkpoint
    assert (out / "report.html").is_file() and list(out.glob("*.png"))
    for parent_id in parents:
        assert any(a.path == "report" for a in client.list_artifacts(parent_id))
