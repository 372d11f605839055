"""search.bm25 runs Pyserini in a subprocess: the JVM must never share a process that forks (Ray)."""
import subprocess
import sys

from trainables.data import read_run


def bm25(*args):
    return subprocess.run([sys.executable, "-m", "search.bm25", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_bm25_run_for_all_dl20_queries_and_reuse(dl20, tmp_path):
    out = tmp_path / "run.trec"
    done = bm25("--collection", dl20 / "collection.tsv", "--queries", dl20 / "queries.tsv", "--out", out,
                "--k", 100, "--threads", 2)
    assert done.returncode == 0, done.stderr[-2000:]
    run = read_run(out)
    assert len(run) == 54 and all(len(hits) == 100 for hits in run.values())
    stamp = out.stat().st_mtime_ns
    again = bm25("--collection", dl20 / "collection.tsv", "--queries", dl20 / "queries.tsv", "--out", out, "--k", 100)
    assert again.returncode == 0 and out.stat().st_mtime_ns == stamp  # index and run reused


def test_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "c.tsv").write_text("1\tok\n2 broken\n")
    (tmp_path / "q.tsv").write_text("1\tq\n")
    done = bm25("--collection", tmp_path / "c.tsv", "--queries", tmp_path / "q.tsv", "--out", tmp_path / "r.trec")
    assert done.returncode == 2 and "c.tsv:2" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.trec").exists()
