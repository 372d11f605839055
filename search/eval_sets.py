"""Named evaluation sets (a data dir's eval/<name>/ folders) in a search: which one the search
optimises (--dev-set), which are test sets (--test-sets, default every other one), their BM25 runs
when a folder has none, and the best trial's final checkpoint scored on the test sets at the end:
metrics test_<set>_<metric> on the best trial's MLflow run and the search's parent run, per-query
scores as an artifact of the trial's run, and each set's reranked run as a TREC file.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from trainables.errors import UsageError

PER_QUERY_ARTIFACT = "test_{}_per_query.json"


def choose(data_dir: Path, dev_set: str | None, test_sets: str | None) -> list[str]:
    """The test sets; every name is checked against the data dir's eval sets before anything runs."""
    from trainables.prepared import eval_set_names
    names = eval_set_names(data_dir)
    listed = f"(eval sets in {Path(data_dir) / 'eval'}: {', '.join(names) or 'none'})"
    if dev_set is not None and dev_set not in names:
        raise UsageError(f"--dev-set {dev_set!r}: no such eval set {listed}")
    if test_sets is None:
        return [name for name in names if name != dev_set]
    tests = [name.strip() for name in test_sets.split(",") if name.strip()]
    for name in tests:
        if name not in names:
            raise UsageError(f"--test-sets: no eval set {name!r} {listed}")
        if name == dev_set:
            raise UsageError(f"--test-sets names {name!r}, the --dev-set: a set the search optimises is no test")
    return sorted(set(tests), key=tests.index)


def ensure_runs(data_dir: Path, storage: Path) -> dict[str, str] | None:
    """{set: BM25 run} for every eval set without a run of its own (made with Pyserini, top 1000);
    a set with no queries.tsv retrieves for its judged queries' texts of the top-level queries.tsv."""
    from search.bm25 import run_in_child
    from search.run import bm25_index
    from trainables.data import find_run_file, read_qrels, read_queries
    from trainables.prepared import EVAL_DIR, eval_set_names
    made = {}
    for name in eval_set_names(data_dir):
        folder = Path(data_dir) / EVAL_DIR / name
        if find_run_file(folder, required=False):
            continue
        out = storage / "bm25" / Path(data_dir).resolve().name / EVAL_DIR / name / "run.bm25.trec"
        queries = folder / "queries.tsv"
        if not queries.is_file():  # only its own queries: the top level may hold MS MARCO's 800k training queries
            judged, texts = read_qrels(folder / "qrels.txt"), read_queries(Path(data_dir) / "queries.tsv")
            queries = out.with_name("queries.tsv")
            queries.parent.mkdir(parents=True, exist_ok=True)
            queries.write_text("".join(f"{q}\t{texts[q]}\n" for q in judged if q in texts), encoding="utf-8")
        print(f"{folder} has no first-stage run: retrieving BM25 top-1000 with Pyserini into {out}", file=sys.stderr)
        made[name] = str(run_in_child(Path(data_dir) / "collection.tsv", queries, out, bm25_index(data_dir, storage))
                         .resolve())
    return made or None


def metric_name(test_set: str, metric: str) -> str:
    return f"test_{test_set}_{metric}"  # set names are letters, digits, '-', '_', '.': valid in MLflow


def score_best(best: dict, base: dict, resources, tests: list[str], out_dir: Path) -> dict:
    """{set: {"metrics", "run", "per_query"}} of the best trial's final checkpoint, scored in a Ray
    task with one trial worker's resources (a GPU when trials have GPUs)."""
    import ray

    from trainables.evaluate import mean_metrics
    from trainables.scoring import score_eval_sets
    outputs = {name: str(out_dir / f"{name}.trec") for name in tests}
    task = ray.remote(num_cpus=resources.cpus_per_worker, num_gpus=1 if resources.use_gpu else 0)(score_eval_sets)
    config = {**base, **best["config"], "num_threads": resources.cpus_per_worker}
    per_query = ray.get(task.remote(best["checkpoint"], config, outputs))
    return {name: {"metrics": mean_metrics(per_query[name]), "run": outputs[name], "per_query": per_query[name]}
            for name in tests}


def log_scores(client, experiment_id: str, summary: dict, trial_id: str, scored: dict) -> None:
    """Metrics on the best trial's run and the parent run of its study; per-query scores on the trial's."""
    from mlflow.entities import Metric
    parent = summary["parent_run_id"]
    found = client.search_runs([experiment_id], f"tags.trial_id = '{trial_id}' and tags.`mlflow.parentRunId` = "
                               f"'{parent}'", max_results=1)
    runs = [parent] + [run.info.run_id for run in found]
    metrics = [Metric(metric_name(name, k), float(v), 0, 0) for name, result in scored.items()
               for k, v in result["metrics"].items()]
    for run_id in runs:
        client.log_batch(run_id, metrics=metrics)
    client.set_tag(parent, "test_sets", ",".join(scored))
    with tempfile.TemporaryDirectory() as tmp:
        for name, result in scored.items():
            path = Path(tmp) / PER_QUERY_ARTIFACT.format(name)
            path.write_text(json.dumps(result["per_query"], indent=1))
            client.log_artifact(runs[-1], str(path))


def score_on_test_sets(summaries: list[dict], base: dict, resources, tests: list[str], out_dir: Path, client,
              experiment_id: str) -> dict:
    """Score, record and print the overall best trial on the test sets; {set: {"metrics", "run"}}."""
    best = max((s["best"] for s in summaries if s["best"]), key=lambda b: b["metrics"]["ndcg_at_10"], default=None)
    if not tests or best is None or not best["checkpoint"]:
        return {}
    scored = score_best(best, base, resources, tests, out_dir)
    summary = next(s for s in summaries if s["best"] is best)
    try:
        log_scores(client, experiment_id, summary, best["trial_id"], scored)
    except Exception as err:  # tracking down: the scores are still in the run files and --output-json
        print(f"warning: test-set scores not recorded in MLflow ({type(err).__name__}: {str(err)[:120]})",
              file=sys.stderr)
    for name, result in scored.items():
        m = result["metrics"]
        print(f"test set {name} ({m['num_queries']} queries), trial {best['trial_id']}'s final checkpoint: "
              f"nDCG@10 {m['ndcg_at_10']:.4f} MAP {m['map']:.4f} MRR@10 {m['mrr_at_10']:.4f} "
              f"R@1000 {m['recall_at_1000']:.4f}; run {result['run']}")
    return {name: {"metrics": result["metrics"], "run": result["run"]} for name, result in scored.items()}
