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


def first_pid(data):
    return (data / "collection.tsv").read_text().split("\t", 1)[0]


def append_bytes(path, line, raw):
    """Bytes that make `path` no valid text, at the end of its line `line` (1-based)."""
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] += raw
    path.write_bytes(b"\n".join(lines))


def empty_store(tmp):
    """An MLflow SQLite store without experiments; its URI."""
    (tmp / "r").mkdir()
    MlflowClient(f"sqlite:///{tmp}/r/mlflow.db").search_experiments()
    return f"sqlite:///{tmp}/r/mlflow.db"


def broken_model(tmp):
    (tmp / "model").mkdir()
    (tmp / "model" / "config.json").write_text("{not json")
    return str(tmp / "model")


def smoke(tmp, *flags):
    return ["--space", "minilm", "--smoke-test", "--storage", str(tmp / "r"), *flags]


def rerank(data, tmp, *flags, collection=None):
    return ["--model", "x", "--collection", str(collection or data / "collection.tsv"), "--queries",
            str(data / "queries.tsv"), "--run", str(data / "run.bm25.trec"), "--out", str(tmp / "o.trec"), *flags]


def bm25(data, tmp, *flags, collection=None):
    return ["--collection", str(collection or data / "collection.tsv"), "--queries", str(data / "queries.tsv"),
            "--out", str(tmp / "o.trec"), *flags]


# (cli module, setup(data, tmp) -> argv, expected text in the message)
CASES = {
    "unknown space": ("search.run", lambda d, t: ["--space", "bert-huge"], "unknown space 'bert-huge'"),
    "unknown preset": ("search.run", lambda d, t: ["--space", "minilm", "--preset", "nope"], "unknown preset 'nope'"),
    "bad registered model name": ("search.run", lambda d, t: ["--space", "minilm", "--register-model", "a/b"],
                                  "--register-model 'a/b'"),
    "unknown optimizer": ("search.run", lambda d, t: ["--space", "minilm", "--optimizers", "adamw,sgd"],
                          "adamw, lion, apollo, apollo_mini, muon, adamw_schedulefree"),
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
    "extend a search that did not finish": ("search.run", lambda d, t: (
        (t / "r" / "searches").mkdir(parents=True), (t / "r" / "searches" / "half.json").write_text(
            '{"experiment": "half", "argv": ["--space", "minilm"], "stamp": "1", "status": "INTERRUPTED", '
            '"studies": {}}'),
        ["--space", "minilm", "--extend", "2", "--storage", str(t / "r"), "--experiment", "half"])[2],
        "did not finish (INTERRUPTED); --resume finishes it first"),
    "extend without a search": ("search.run", lambda d, t: ["--space", "minilm", "--extend", "2", "--storage",
                                                            str(t / "r"), "--experiment", "never-ran"], "'never-ran'"),
    "bad Optuna storage URL": ("search.run", lambda d, t: smoke(t, "--optuna-storage", "nosuchdb://host/db"),
                               "--optuna-storage 'nosuchdb://host/db': not a usable SQLAlchemy URL"),
    "Optuna storage not SQLite": ("search.run", lambda d, t: smoke(t, "--optuna-storage", f"sqlite:///{d}/qrels.txt"),
                                  "qrels.txt is not an SQLite database"),
    "corrupt search record": ("search.run", lambda d, t: (
        (t / "r" / "searches").mkdir(parents=True), (t / "r" / "searches" / "broken.json").write_text("{oops"),
        ["--space", "minilm", "--resume", "--storage", str(t / "r"), "--experiment", "broken"])[2], "broken.json"),
    "batch smaller than its micro-batches": ("search.run", lambda d, t: [
        "--space", "minilm", "--smoke-test", "--storage", str(t / "r"), "--workers-per-trial", "2", "--set",
        "batch_size=3", "--set", "grad_accum=2"], "batch_size=3 is smaller than 2 worker(s) × grad_accum=2"),
    "GPUs requested, none present": ("search.run", lambda d, t: ["--space", "minilm", "--smoke-test", "--storage",
                                                                 str(t / "r"), "--gpus-per-trial", "3"], "0 GPU"),
    "expected GPUs a local Ray never has": ("search.run", lambda d, t: smoke(t, "--expect-gpus", "2"),
                                            "--expect-gpus 2: this machine has 0 GPU(s)"),
    "--set not an integer": ("search.run", lambda d, t: smoke(t, "--set", "max_length=abc"),
                             "'max_length'='abc': must be an integer"),
    "--set a number for a flag": ("search.run", lambda d, t: smoke(t, "--set", "bf16=1"),
                                  "'bf16'=1: must be true or false"),
    "--set text for a number": ("search.run", lambda d, t: smoke(t, "--set", "first_stage_weight=high"),
                                "'first_stage_weight'='high': must be a number or null"),
    "MarginMSE without teacher scores": ("search.run", lambda d, t: smoke(t, "--set", "loss=margin_mse"),
                                         "'loss'='margin_mse': needs a teacher's score for each training pair"),
    "listwise batch not in whole groups": ("search.run", lambda d, t: smoke(t, "--set", "loss=listwise",
                                                                            "--set", "batch_size=10"),
                                           "batch_size=10 is not a multiple of the group size 4"),
    "--set without a value": ("search.run", lambda d, t: smoke(t, "--set", "max_length"), "expected KEY=VALUE"),
    "batch smaller than its workers": ("search.run", lambda d, t: smoke(t, "--set", "batch_size=1",
                                                                        "--workers-per-trial", "2"),
                                       "batch_size=1 is smaller than 2 worker(s) × grad_accum=1"),
    "batch larger than the training set": ("search.run", lambda d, t: smoke(t, "--set", "batch_size=100000"),
                                           "batch_size=100000 is larger than the 64 training pairs"),
    "zero workers": ("search.run", lambda d, t: smoke(t, "--workers-per-trial", "0"), "--workers-per-trial must be >= 1"),
    "negative GPUs": ("search.run", lambda d, t: smoke(t, "--gpus-per-trial", "-1"), "--gpus-per-trial must be >= 0"),
    "zero concurrency": ("search.run", lambda d, t: smoke(t, "--max-concurrent", "0"), "--max-concurrent must be >= 1"),
    "more workers than CPUs": ("search.run", lambda d, t: smoke(t, "--workers-per-trial", "100000"),
                               "--workers-per-trial 100000 but the cluster has"),
    "workers beside GPUs": ("search.run", lambda d, t: smoke(t, "--gpus-per-trial", "2", "--workers-per-trial", "1"),
                            "one worker per GPU"),
    "queries not UTF-8": ("search.run", lambda d, t: (
        append_bytes(d / "queries.tsv", 2, b" caf\xe9"), smoke(t, "--data", str(d)))[1],
        "queries.tsv:2: not valid text: byte 0xe9"),
    "NUL byte in collection": ("search.run", lambda d, t: (
        append_bytes(d / "collection.tsv", 3, b"\x00"), smoke(t, "--data", str(d)))[1],
        "collection.tsv:3: not valid text: a NUL byte"),
    "triples name an unknown passage": ("search.run", lambda d, t: (
        (d / "triples.tsv").write_text(f"{first_qid(d)}\t{first_pid(d)}\t{first_pid(d)}\n{first_qid(d)}\tghost\t"
                                       f"{first_pid(d)}\n"), smoke(t, "--data", str(d)))[1], "triples.tsv:2: id 'ghost'"),
    "storage is a file": ("search.run", lambda d, t: ((t / "file").write_text("x"),
                                                      ["--space", "minilm", "--storage", str(t / "file")])[1],
                          "--storage"),
    "output JSON is a directory": ("search.run", lambda d, t: smoke(t, "--output-json", str(d)), "--output-json"),
    "model config not JSON": ("search.run", lambda d, t: ["--space", "minilm", "--storage", str(t / "r"),
                                                          "--model", broken_model(t)],
                              "config.json: not a valid model config"),
    "tracking store not SQLite": ("search.run", lambda d, t: smoke(t, "--mlflow-uri", f"sqlite:///{d}/qrels.txt"),
                                  "qrels.txt is not an SQLite database"),
    "rerun unknown experiment": ("search.rerun", lambda d, t: ["--experiment", "nothing-here", "--mlflow-uri",
                                                               empty_store(t)], "'nothing-here'"),
    "rerun negative seeds": ("search.rerun", lambda d, t: ["--experiment", "x", "--seeds", "-1"], "--seeds"),
    "rerun zero workers": ("search.rerun", lambda d, t: ["--experiment", "x", "--workers-per-trial", "0"],
                           "--workers-per-trial must be >= 1"),
    "rerun without a tracking store": ("search.rerun", lambda d, t: ["--experiment", "x", "--storage", str(t / "none")],
                                       "no database at"),
    "bm25 malformed collection": ("search.bm25", lambda d, t: (
        edit(d / "collection.tsv", lambda s: s.replace("\n", "\nno tab here\n", 1)),
        ["--collection", str(d / "collection.tsv"), "--queries", str(d / "queries.tsv"), "--out", str(t / "o.trec")])[1],
        "collection.tsv:2"),
    "bm25 bad k": ("search.bm25", lambda d, t: ["--collection", str(d / "collection.tsv"), "--queries",
                                               str(d / "queries.tsv"), "--out", str(t / "o.trec"), "--k", "0"], "--k"),
    "bm25 missing collection": ("search.bm25", lambda d, t: bm25(d, t, collection=t / "none.tsv"),
                                "none.tsv: file not found"),
    "bm25 queries not UTF-8": ("search.bm25", lambda d, t: (append_bytes(d / "queries.tsv", 4, b"\xff"),
                                                            bm25(d, t))[1], "queries.tsv:4: not valid text"),
    "bm25 out is a directory": ("search.bm25", lambda d, t: bm25(d, t)[:-1] + [str(d)], "--out"),
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
    "evaluate run not valid text": ("analysis.evaluate", lambda d, t: (
        append_bytes(d / "run.bm25.trec", 2, b"\x00"),
        ["--run", str(d / "run.bm25.trec"), "--qrels", str(d / "qrels.txt")])[1], "run.bm25.trec:2: not valid text"),
    "rerank missing collection": ("trainables.rerank", lambda d, t: rerank(d, t, collection=t / "none.tsv"),
                                  "none.tsv: file not found"),
    "rerank out is a directory": ("trainables.rerank", lambda d, t: rerank(d, t)[:-1] + [str(d)], "--out"),
    "rerank model config not JSON": ("trainables.rerank", lambda d, t: ["--model", broken_model(t)] + rerank(d, t)[2:],
                                     "config.json: not a valid model config"),
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
    "report out is a file": ("analysis.report", lambda d, t: ["--experiment", "x", "--mlflow-uri", empty_store(t),
                                                              "--out", str(d / "qrels.txt")],
                             "exists and is not a directory"),
    "report out holds other files": ("analysis.report", lambda d, t: ["--experiment", "x", "--mlflow-uri",
                                                                      empty_store(t), "--out", str(d)],
                                     "not empty and holds no report.md"),
    "report store not SQLite": ("analysis.report", lambda d, t: ["--experiment", "x", "--mlflow-uri",
                                                                 f"sqlite:///{d}/qrels.txt", "--out", str(t / "rep")],
                                "qrels.txt is not an SQLite database"),
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
    assert "Traceback" not in err and "local Ray instance" not in err and "Ray's dashboard" not in err, err
    # One error line: ours ("error: ...") or argparse's ("python -m MODULE: error: ...").
    message = [line for line in err.splitlines() if line.startswith("error:") or line.startswith(f"python -m {module}: error:")]
    assert len(message) == 1 and needle in message[0], err
    created = set(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) - before
    # No outputs. Caches may remain, complete: the tiny smoke model, and prepared data (cases that
    # fail after preparing; a failed preparation leaves no temporary folder, trainables/prepared.py).
    temporary = [p for p in created if p.name.startswith(".")]
    outputs = [p for p in created if p.is_file() and "tiny-models" not in p.parts and "prepared" not in p.parts]
    assert not temporary and not outputs, created
