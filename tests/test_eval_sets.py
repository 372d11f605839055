"""Named eval sets end to end: a smoke search on DL20 with a third of its queries held out as
eval/dl20-heldout; the best trial's final checkpoint is scored on it, and what the search reports
is what analysis.evaluate computes from the run file it wrote."""
import json
import os
import subprocess
import sys

from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.eval_data import hold_out


def test_a_smoke_search_scores_the_held_out_set_as_analysis_evaluate_scores_its_run(dl20, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out.json"
    held = hold_out(dl20, data, "dl20-heldout")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "search.run", "--space", "minilm", "--smoke-test", "--data", str(data),
                           "--trials", "1", "--epochs", "1", "--storage", str(tmp_path / "runs"), "--output-json",
                           str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert list(saved["test"]) == ["dl20-heldout"]
    result = saved["test"]["dl20-heldout"]
    evaluated = subprocess.run([sys.executable, "-m", "analysis.evaluate", "--run", result["run"], "--qrels",
                                str(data / "eval" / "dl20-heldout" / "qrels.txt"), "--json"],
                               capture_output=True, text=True, check=True, env=env)
    assert json.loads(evaluated.stdout) == result["metrics"] and result["metrics"]["num_queries"] == len(held)
    client = MlflowClient(saved["mlflow_uri"])
    parent = client.get_run(saved["studies"][0]["parent_run_id"])
    trial = client.search_runs([parent.info.experiment_id], f"tags.trial_id = '{saved['best']['trial_id']}'")[0]
    for run in (parent, trial):
        assert run.data.metrics["test_dl20-heldout_ndcg_at_10"] == result["metrics"]["ndcg_at_10"]
        assert {f"test_dl20-heldout_{m}" for m in ("map", "mrr_at_10", "recall_at_100")} <= set(run.data.metrics)
    per_query = json.loads(open(client.download_artifacts(trial.info.run_id, "test_dl20-heldout_per_query.json",
                                                          str(tmp_path))).read())
    assert sorted(per_query) == held
