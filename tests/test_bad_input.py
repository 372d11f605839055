"""Bad input across the CLIs: each case exits 2 with one line naming the file, line or key, no
traceback, and writes no output. Each CLI runs as the user runs it: `python -m module ...`."""
import os
import shutil
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import EMBEDDED, ROOT


@pytest.fixture
def data(tmp_path):
    """A writable copy of the embedded data, for corrupting one file per case."""
    copy = tmp_path / "data"
    shutil.copytree(EMBEDDED, copy)
    return copy


def edit(path, transform):
    path.write_text(transform(path.read_text()))


def with_eval_set(data):
    """eval/held/: the last 20 judged queries' qrels and run, their texts in the top-level queries.tsv."""
    folder = data / "eval" / "held"
    folder.mkdir(parents=True)
    held = sorted({line.split()[0] for line in (data / "qrels.txt").read_text().splitlines() if line.strip()})[-20:]
    for name in ("qrels.txt", "run.bm25.trec"):
        lines = (data / name).read_text().splitlines(keepends=True)
        (folder / name).write_text("".join(l for l in lines if l.split()[0] in held))
        (data / name).write_text("".join(l for l in lines if l.split()[0] not in held))


def first_qid(data):
    return (data / "queries.tsv").read_text().split("\t", 1)[0]


# (cli module, setup(data, tmp) -> argv, expected text in the message)
CASES = {
    "unknown space": ("search.run", lambda d, t: ["--space", "bert-huge"], "unknown space 'bert-huge'"),
    "unknown preset": ("search.run", lambda d, t: ["--space", "minilm", "--preset", "nope"], "unknown preset 'nope'"),
    "zero trials": ("search.run", lambda d, t: ["--space", "minilm", "--trials", "0"], "--trials"),
    "bad dev fraction": ("search.run", lambda d, t: ["--space", "minilm", "--dev-fraction", "1.5"], "--dev-fraction"),
    "bad folds": ("search.run", lambda d, t: ["--space", "minilm", "--folds", "1"], "--folds"),
    "non-numeric flag": ("search.run", lambda d, t: ["--space", "minilm", "--epochs", "two"], "--epochs"),
    "missing data dir": ("search.run", lambda d, t: ["--space", "minilm", "--data", str(t / "nowhere")], "nowhere"),
    "malformed qrels line": ("search.run", lambda d, t: (
        edit(d / "qrels.txt", lambda s: s.replace("\n", "\nnot a qrels line\n", 1)),
        ["--space", "minilm", "--data", str(d), "--smoke-test"])[1], "qrels.txt:2"),
    "duplicate query id": ("search.run", lambda d, t: (
        edit(d / "queries.tsv", lambda s: s + s.splitlines()[0] + "\n"),
        ["--space", "minilm", "--data", str(d), "--smoke-test"])[1], "duplicate qid"),
    "qrels for unknown query": ("search.run", lambda d, t: (
        edit(d / "qrels.txt", lambda s: s + "ghost-query 0 p1 2\n"),
        ["--space", "minilm", "--data", str(d), "--smoke-test"])[1], "'ghost-query'"),
    "run names unknown passage": ("search.run", lambda d, t: (
        edit(d / "run.bm25.trec", lambda s: f"{first_qid(d)} Q0 ghost-passage 1 99.0 x\n" + s),
        ["--space", "minilm", "--data", str(d), "--smoke-test"])[1], "'ghost-passage'"),
    "empty queries file": ("search.run", lambda d, t: (
        (d / "queries.tsv").write_text(""), ["--space", "minilm", "--data", str(d), "--smoke-test"])[1],
        "queries.tsv: no qids"),
    "unknown config key": ("search.run", lambda d, t: ["--space", "minilm", "--smoke-test", "--set", "learning_rate=1"],
                           "unknown config key 'learning_rate'"),
    "bad config value": ("search.run", lambda d, t: ["--space", "minilm", "--smoke-test", "--set", "max_length=0"],
                         "'max_length'"),
    "missing triples file": ("search.run", lambda d, t: ["--space", "minilm", "--smoke-test", "--data", str(d),
                                                         "--training-data", "triples"], "triples"),
    "model not available offline": ("search.run", lambda d, t: ["--space", "minilm", "--model", "nobody/no-model"],
                                     "'nobody/no-model'"),
    "unreachable MLflow": ("search.run", lambda d, t: ["--space", "minilm", "--smoke-test", "--storage", str(t / "r"),
                                                       "--mlflow-uri", "http://127.0.0.1:9"], "http://127.0.0.1:9"),
    "resume without a search": ("search.run", lambda d, t: ["--space", "minilm", "--resume", "--storage", str(t / "r"),
                                                            "--experiment", "never-ran"], "'never-ran'"),
    "corrupt search record": ("search.run", lambda d, t: (
        (t / "r" / "searches").mkdir(parents=True), (t / "r" / "searches" / "broken.json").write_text("{oops"),
        ["--space", "minilm", "--resume", "--storage", str(t / "r"), "--experiment", "broken"])[2], "broken.json"),
    "batch smaller than its micro-batches": ("search.run", lambda d, t: [
        "--space", "minilm", "--smoke-test", "--storage", str(t / "r"), "--workers-per-trial", "2", "--set",
        "batch_size=3", "--set", "grad_accum=2"], "batch_size=3 is smaller than 2 worker(s) × grad_accum=2"),
    "GPUs requested, none present": ("search.run", lambda d, t: ["--space", "minilm", "--smoke-test", "--storage",
                                                                 str(t / "r"), "--gpus-per-trial", "3"], "0 GPU"),
    "expected GPUs never join": ("search.run", lambda d, t: ["--space", "minilm", "--smoke-test", "--storage", str(t / "r"),
                                                             "--expect-gpus", "2", "--expect-gpus-timeout", "1"],
                                 "--expect-gpus 2: the cluster has 0 GPU(s) after 1 s"),
    "bm25 malformed collection": ("search.bm25", lambda d, t: (
        edit(d / "collection.tsv", lambda s: s.replace("\n", "\nno tab here\n", 1)),
        ["--collection", str(d / "collection.tsv"), "--queries", str(d / "queries.tsv"), "--out", str(t / "o.trec")])[1],
        "collection.tsv:2"),
    "bm25 bad k": ("search.bm25", lambda d, t: ["--collection", str(d / "collection.tsv"), "--queries",
                                               str(d / "queries.tsv"), "--out", str(t / "o.trec"), "--k", "0"], "--k"),
    "no Java for BM25": ("search.bm25", lambda d, t: ["--collection", str(d / "collection.tsv"), "--queries",
                                                     str(d / "queries.tsv"), "--out", str(t / "o.trec")], "no Java"),
    "evaluate malformed run": ("analysis.evaluate", lambda d, t: (
        edit(d / "run.bm25.trec", lambda s: s.replace("\n", "\nq Q0 p one 1.0 x\n", 1)),
        ["--run", str(d / "run.bm25.trec"), "--qrels", str(d / "qrels.txt")])[1], "run.bm25.trec:2"),
    "evaluate missing qrels": ("analysis.evaluate", lambda d, t: ["--run", str(d / "run.bm25.trec"), "--qrels",
                                                                 str(t / "none.txt")], "none.txt: file not found"),
    "evaluate unjudged run": ("analysis.evaluate", lambda d, t: (
        (t / "other.trec").write_text("zzz Q0 p 1 1.0 x\n"),
        ["--run", str(t / "other.trec"), "--qrels", str(d / "qrels.txt")])[1], "other.trec"),
    "rerank corrupt checkpoint": ("trainables.rerank", lambda d, t: (
        (t / "ckpt" / "model").mkdir(parents=True), (t / "ckpt" / "model" / "config.json").write_text("{}"),
        (t / "ckpt" / "state.pt").write_bytes(b"not a torch file"),
        ["--model", str(t / "ckpt"), "--collection", str(d / "collection.tsv"), "--queries", str(d / "queries.tsv"),
         "--run", str(d / "run.bm25.trec"), "--out", str(t / "o.trec")])[3], "state.pt: corrupt checkpoint"),
    "rerank bad depth": ("trainables.rerank", lambda d, t: [
        "--model", "x", "--collection", str(d / "collection.tsv"), "--queries", str(d / "queries.tsv"),
        "--run", str(d / "run.bm25.trec"), "--out", str(t / "o.trec"), "--depth", "0"], "--depth"),
    "report unknown experiment": ("analysis.report", lambda d, t: (
        (t / "r").mkdir(), MlflowClient(f"sqlite:///{t}/r/mlflow.db").search_experiments(),
        ["--experiment", "nothing-here", "--mlflow-uri", f"sqlite:///{t}/r/mlflow.db", "--out", str(t / "report")])[2],
        "nothing-here"),
    "unknown dev set": ("search.run", lambda d, t: (
        with_eval_set(d), ["--space", "minilm", "--smoke-test", "--data", str(d), "--dev-set", "nope"])[1],
        "--dev-set 'nope': no such eval set"),
    "unknown test set": ("search.run", lambda d, t: (
        with_eval_set(d), ["--space", "minilm", "--smoke-test", "--data", str(d), "--test-sets", "held,nope"])[1],
        "--test-sets: no eval set 'nope'"),
    "dev set also a test set": ("search.run", lambda d, t: (
        with_eval_set(d), ["--space", "minilm", "--smoke-test", "--data", str(d), "--dev-set", "held",
                           "--test-sets", "held"])[1], "--test-sets names 'held', the --dev-set"),
    "eval set without qrels": ("search.run", lambda d, t: (
        with_eval_set(d), (d / "eval" / "held" / "qrels.txt").unlink(),
        ["--space", "minilm", "--smoke-test", "--data", str(d)])[2], "eval/held/qrels.txt: file not found"),
    "dev set with folds": ("search.run", lambda d, t: (
        with_eval_set(d), ["--space", "minilm", "--smoke-test", "--data", str(d), "--dev-set", "held",
                           "--folds", "5"])[1], "with --dev-set the test sets are eval sets"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_clear_line(name, data, tmp_path):
    module, setup, needle = CASES[name]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if name == "no Java for BM25":
        env["BM25_JAVA_HOME"] = str(tmp_path / "no-jdk")
    argv = setup(data, tmp_path)
    before = set(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    # cwd is tmp_path: anything written by mistake (e.g. a default ./runs) would land there.
    done = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path, env=env)
    err = done.stderr
    assert done.returncode == 2, err[-3000:]
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith(("error:", "usage:", "python -m"))]
    assert message and needle in err, err
    created = set(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) - before
    # No outputs. The GPU checks need Ray, so those cases got as far as building their tiny smoke
    # model and preparing the data (a complete, reusable cache, trainables/prepared.py).
    outputs = [p for p in created if p.suffix in (".trec", ".json", ".md", ".html", ".png", ".db")
               and "tiny-models" not in p.parts and "prepared" not in p.parts]
    assert not outputs, outputs
