"""A data directory prepared once: Arrow files the driver and every worker memory-map, so start-up
does not grow with the collection and all workers on a node share the passage text through the
page cache.

    <cache>/<dirname>-<key>/passages.arrow   pid, text, length   (collection rows, then text-triple texts)
                            queries.arrow    qid, text, length   (queries.tsv rows, then text-triple queries)
                            qrels.arrow      qid, q, pid, p, rel (q, p: rows; p = -1 for an unknown passage)
                            run.arrow        qid, q, pid, p, score
                            triples.arrow    q, pos, neg         (rows; absent without a triples file)
                            eval/<name>/     each eval set of the data dir (data_dir/eval/<name>/):
                                queries.arrow    its own queries.tsv (absent: its qids are top-level ones)
                                qrels.arrow      q rows into its queries, p rows into passages.arrow
                                run.arrow
                            manifest.json    written last: a folder without it is incomplete

The key hashes each input file's path, size, mtime and first and last MiB, so an edited file makes
a new folder. Every file is validated here once, with the same file:line errors as the TSV readers.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from trainables import data as tsv
from trainables.errors import UsageError

FORMAT = 1
TABLES = ("passages", "queries", "qrels", "run", "triples")
SAMPLE = 1 << 20  # bytes hashed from each end of a file: cheap, and catches an edit that keeps size and mtime
BLOCK = 16 << 20  # bytes per Arrow CSV block: bounds preparation memory whatever the collection's size
EVAL_DIR = "eval"
# Set names become MLflow metric names (test_<name>_map) and file names: keep them to safe characters.
SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*$")


def eval_set_names(data_dir) -> list[str]:
    """The data dir's eval/<name>/ folders, each checked to be usable: a safe name and a qrels.txt."""
    root = Path(data_dir) / EVAL_DIR
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if root.is_dir() else []
    for name in names:
        if not SET_NAME.match(name):
            raise UsageError(f"{root / name}: an eval set's name may hold only letters, digits, '-', '_' and '.'")
        if not (root / name / "qrels.txt").is_file():
            raise UsageError(f"{root / name / 'qrels.txt'}: file not found (every eval set needs its judgments)")
    return names


def input_files(data_dir: Path, run_file, eval_runs=None) -> dict[str, Path]:
    """Every input by role; an eval set's are "eval/<name>/queries" (optional), ".../qrels", ".../run".
    eval_runs: {name: run file} for eval sets whose run is not in their folder (BM25 made by search.run)."""
    from trainables.triples import find_triples
    files = {"collection": data_dir / "collection.tsv", "queries": data_dir / "queries.tsv",
             "qrels": data_dir / "qrels.txt", "run": Path(run_file) if run_file else tsv.find_run_file(data_dir)}
    triples = find_triples(data_dir)
    if triples:
        files["triples"] = triples
    for name in eval_set_names(data_dir):
        folder, key = data_dir / EVAL_DIR / name, f"{EVAL_DIR}/{name}/"
        if (folder / "queries.tsv").is_file():
            files[key + "queries"] = folder / "queries.tsv"
        files[key + "qrels"] = folder / "qrels.txt"
        files[key + "run"] = Path(eval_runs[name]) if name in (eval_runs or {}) else tsv.find_run_file(folder)
    for path in files.values():
        if not path.is_file():
            raise UsageError(f"{path}: file not found")
    return files


def file_identity(path: Path) -> dict:
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        digest.update(handle.read(SAMPLE))
        if stat.st_size > 2 * SAMPLE:
            handle.seek(-SAMPLE, os.SEEK_END)
            digest.update(handle.read(SAMPLE))
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sample_hash": digest.hexdigest()}


def cache_key(identities: dict) -> str:
    return hashlib.sha256(json.dumps([FORMAT, identities], sort_keys=True).encode()).hexdigest()[:16]


def prepare(data_dir, run_file=None, cache_root=None, eval_runs=None) -> Path:
    """The prepared folder for `data_dir` (and its first-stage run), built when missing or stale.

    Built in a private temporary folder and renamed into place: two processes preparing the same
    data at once both end with one complete copy."""
    data_dir = Path(data_dir)
    root = Path(cache_root) if cache_root else Path(tempfile.gettempdir()) / "rerank-prepared"
    target, identities = cached(data_dir, run_file, root, eval_runs)
    if is_complete(target, identities):
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    started = time.perf_counter()
    print(f"preparing {data_dir} into {target} (once: later searches, trials and workers reuse it)",
          file=sys.stderr)
    try:
        counts = build(tmp, {name: Path(i["path"]) for name, i in identities.items()})
        sizes = {str(p.relative_to(tmp)): p.stat().st_size for p in tmp.rglob("*.arrow")}
        (tmp / "manifest.json").write_text(json.dumps({"format": FORMAT, "inputs": identities, "counts": counts,
                                                       "sizes": sizes}, indent=1))
        if target.exists() and not is_complete(target, identities):
            shutil.rmtree(target, ignore_errors=True)  # truncated or foreign: rebuilt
        try:
            tmp.rename(target)
        except OSError:  # another process renamed its complete copy first
            if not is_complete(target, identities):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"prepared in {time.perf_counter() - started:.1f} s: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()),
          file=sys.stderr)
    return target


def cached(data_dir: Path, run_file, root: Path, eval_runs=None) -> tuple[Path, dict]:
    """(the prepared folder under root for these inputs, their identities); reads, writes nothing."""
    if not data_dir.is_dir():
        raise UsageError(f"{data_dir}: data directory not found")
    identities = {name: file_identity(path) for name, path in input_files(data_dir, run_file, eval_runs).items()}
    return root / f"{data_dir.resolve().name}-{cache_key(identities)}", identities


def is_complete(folder: Path, identities: dict) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (manifest.get("format") == FORMAT and manifest.get("inputs") == identities
            and all((folder / name).is_file() and (folder / name).stat().st_size == size
                    for name, size in manifest.get("sizes", {}).items()))


def build(out: Path, files: dict[str, Path]) -> dict:
    """Validate every input and write the Arrow files; returns row counts."""
    passages = TextTable(out / "passages.arrow", "pid")
    queries = TextTable(out / "queries.arrow", "qid")
    pids = passages.add_tsv(files["collection"], "pid")
    qids = queries.add_tsv(files["queries"], "qid")
    qrels = tsv.read_qrels(files["qrels"])
    run = tsv.read_run(files["run"])
    check_references(qrels, run, qids, pids, files)
    write_table(out / "qrels.arrow", judgments_table(qrels, qids, pids, "rel"))
    write_table(out / "run.arrow", judgments_table(run, qids, pids, "score"))
    counts = {"passages": len(pids), "queries": len(qids), "qrels": sum(map(len, qrels.values())),
              "run": sum(map(len, run.values()))}
    for name in sorted({key.split("/")[1] for key in files if key.startswith(EVAL_DIR + "/")}):
        counts.update(build_eval_set(out, name, files, qids, pids))
    if "triples" in files:
        from trainables.triples import prepare_triples
        triples = prepare_triples(files["triples"], queries, passages, qids, pids)
        write_table(out / "triples.arrow", triples)
        counts["triples"] = triples.num_rows
    counts["passages"], counts["queries"] = passages.close(), queries.close()
    return counts


def build_eval_set(out: Path, name: str, files: dict[str, Path], top_qids: pa.Array, pids: pa.Array) -> dict:
    """One eval set's tables under out/eval/<name>/: its queries (own, or the top level's by id),
    qrels and run, checked against them and the top-level collection."""
    key, folder = f"{EVAL_DIR}/{name}/", out / EVAL_DIR / name
    folder.mkdir(parents=True)
    own = {k[len(key):]: path for k, path in files.items() if k.startswith(key)}
    counts, qids = {}, top_qids
    if "queries" in own:
        queries = TextTable(folder / "queries.arrow", "qid")
        qids = queries.add_tsv(own["queries"], "qid")
        counts[key + "queries"] = queries.close()
    else:
        own["queries"] = files["queries"]
    qrels, run = tsv.read_qrels(own["qrels"]), tsv.read_run(own["run"])
    check_references(qrels, run, qids, pids, own)
    write_table(folder / "qrels.arrow", judgments_table(qrels, qids, pids, "rel"))
    write_table(folder / "run.arrow", judgments_table(run, qids, pids, "score"))
    return {**counts, key + "qrels": sum(map(len, qrels.values())), key + "run": sum(map(len, run.values()))}


def check_references(qrels: dict, run: dict, qids: pa.Array, pids: pa.Array, files: dict[str, Path]) -> None:
    """RetrievalData.check's rules, with Arrow's hash lookups instead of dicts of the collection.
    files: the "qrels", "queries" and "run" paths the errors name."""
    run_path = files["run"]
    names = list(qrels)
    missing = pc.invert(pc.is_in(pa.array(names, pa.string()), value_set=qids))
    if pc.any(missing).as_py():
        raise UsageError(f"{files['qrels']}: query {names[pc.index(missing, True).as_py()]!r} is not in "
                         f"{files['queries']}")
    names = list(run)
    missing = pc.invert(pc.is_in(pa.array(names, pa.string()), value_set=qids))
    if pc.any(missing).as_py():
        raise UsageError(f"{run_path}: query {names[pc.index(missing, True).as_py()]!r} is not in {files['queries']}")
    flat = pa.array([pid for scores in run.values() for pid in scores], pa.string())
    missing = pc.invert(pc.is_in(flat, value_set=pids))
    if pc.any(missing).as_py():
        pid = flat[pc.index(missing, True).as_py()].as_py()
        qid = next(q for q, scores in run.items() if pid in scores)
        raise UsageError(f"{run_path}: passage {pid!r} (query {qid}) is not in collection.tsv")
    if not set(qrels) & set(run):
        raise UsageError(f"{run_path}: no query of the run has judgments in {files['qrels']}")


def judgments_table(nested: dict, qids: pa.Array, pids: pa.Array, value: str) -> pa.Table:
    """qrels or a run as rows: (qid, q, pid, p, value), in file order per query."""
    qid_col = [q for q, inner in nested.items() for _ in inner]
    pid_col = [p for inner in nested.values() for p in inner]
    q = pc.fill_null(pc.index_in(pa.array(qid_col, pa.string()), value_set=qids), -1)
    p = pc.fill_null(pc.index_in(pa.array(pid_col, pa.string()), value_set=pids), -1)
    values = [v for inner in nested.values() for v in inner.values()]
    kind = pa.int32() if value == "rel" else pa.float64()
    return pa.table({"qid": pa.array(qid_col, pa.string()), "q": q.cast(pa.int32()),
                     "pid": pa.array(pid_col, pa.string()), "p": p.cast(pa.int32()),
                     value: pa.array(values, kind)})


def write_table(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


class TextTable:
    """An id/text Arrow file written in batches: the TSV's rows, then texts added by triples."""

    def __init__(self, path: Path, key: str):
        self.key, self.path = key, path
        self.schema = pa.schema([(key, pa.string()), ("text", pa.string()), ("length", pa.int32())])
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_file(self.sink, self.schema)
        self.rows = 0

    def add_tsv(self, path: Path, what: str) -> pa.Array:
        """Append every row of an `id<TAB>text` file; returns its ids. Any row Arrow's reader does not
        take as it is goes through the reference reader, which names the file and line."""
        ids = []
        try:
            for batch in stream_tsv(path, [self.key, "text"]):
                key = pc.utf8_trim_whitespace(batch.column(0))
                if pc.any(pc.equal(pc.utf8_length(key), 0)).as_py():
                    raise ValueError("empty id")
                if any(pc.any(pc.match_substring(c, "\x00")).as_py() for c in batch.columns):
                    raise ValueError("NUL byte")  # valid UTF-8 to Arrow, but no text
                self.append(key, batch.column(1))
                ids.append(key)
        except (pa.ArrowInvalid, ValueError):
            return self.redo_with_reference_reader(path, what)
        found = pa.chunked_array(ids, pa.string()).combine_chunks()
        if len(found) == 0 or pc.count_distinct(found).as_py() != len(found):
            return self.redo_with_reference_reader(path, what)
        return found

    def redo_with_reference_reader(self, path: Path, what: str) -> pa.Array:
        texts = tsv._read_tsv_texts(path, what)  # raises the file:line error
        self.writer.close()  # nothing bad found by it (e.g. a line of blanks): take its reading
        self.sink.close()
        self.sink = pa.OSFile(str(self.path), "wb")
        self.writer, self.rows = pa.ipc.new_file(self.sink, self.schema), 0
        keys = pa.array(list(texts), pa.string())
        self.append(keys, pa.array(list(texts.values()), pa.string()))
        return keys

    def append(self, keys, texts) -> None:
        lengths = pc.utf8_length(texts).cast(pa.int32())
        self.writer.write_batch(pa.record_batch([keys, texts, lengths], schema=self.schema))
        self.rows += len(keys)

    def close(self) -> int:
        self.writer.close()
        self.sink.close()
        return self.rows


def stream_tsv(path: Path, names: list[str]):
    """Record batches of a headerless, unquoted TSV; raises ArrowInvalid on a row of the wrong width.
    Each block is parsed on its own: Arrow's streaming reader reads ahead by many blocks."""
    # One batch per block: id lookups hash the whole id column once per batch.
    options = (pacsv.ReadOptions(column_names=names, use_threads=False, block_size=2 * BLOCK),
               pacsv.ParseOptions(delimiter="\t", quote_char=False),
               pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                                    quoted_strings_can_be_null=False))
    for block in line_blocks(path, BLOCK):
        yield from pacsv.read_csv(pa.py_buffer(block), *options).to_batches()


def line_blocks(path: Path, size: int):
    """The file's bytes in pieces of about `size` that end at a newline (the last one may not)."""
    rest = b""
    with open(path, "rb") as handle:
        while data := handle.read(size):
            data = rest + data
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                yield data[:cut]
    if rest:
        yield rest


def open_prepared(data_dir, run_file=None, folder=None, eval_runs=None) -> "Prepared":
    """The prepared form search.run made (folder), or one made here when it is absent on this node."""
    if folder and (Path(folder) / "manifest.json").is_file():
        return Prepared(folder)
    return Prepared(prepare(data_dir, run_file, eval_runs=eval_runs))


def read_table(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


class Prepared:
    """The prepared folder, memory-mapped: opening it reads no text."""

    def __init__(self, folder):
        self.folder = Path(folder)
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            raise UsageError(f"{self.folder}: not a prepared data folder (no manifest.json)")
        self.manifest = json.loads(manifest.read_text())
        self.tables = {name: read_table(self.folder / f"{name}.arrow") for name in TABLES
                       if (self.folder / f"{name}.arrow").is_file()}
        self.passages, self.queries = self.tables["passages"], self.tables["queries"]
        inputs = self.manifest["inputs"]
        self.top = Judged(self.passages, self.queries, self.tables["qrels"], self.tables["run"],
                          Path(inputs["run"]["path"]))
        self.eval_sets = {name: self._eval_set(name, inputs) for name in
                          sorted({k.split("/")[1] for k in inputs if k.startswith(EVAL_DIR + "/")})}

    def _eval_set(self, name: str, inputs: dict) -> "Judged":
        folder = self.folder / EVAL_DIR / name
        queries = read_table(folder / "queries.arrow") if (folder / "queries.arrow").is_file() else self.queries
        return Judged(self.passages, queries, read_table(folder / "qrels.arrow"), read_table(folder / "run.arrow"),
                      Path(inputs[f"{EVAL_DIR}/{name}/run"]["path"]))

    def eval_set(self, name: str) -> "Judged":
        if name not in self.eval_sets:
            raise UsageError(f"no eval set {name!r} in the data (eval sets: {', '.join(self.eval_sets) or 'none'})")
        return self.eval_sets[name]

    def passage_texts(self, rows) -> list[str]:
        return take(self.passages.column("text"), rows).to_pylist()

    def query_texts(self, rows) -> list[str]:
        return take(self.queries.column("text"), rows).to_pylist()

    def usable_qids(self) -> list[str]:
        """Top-level queries both judged and retrieved: the ones that can be trained on or scored."""
        return self.top.usable_qids()

    def top_grade(self) -> int:
        return pc.max(self.tables["qrels"].column("rel")).as_py() or 1

    def lengths(self, table: str) -> np.ndarray:
        return self.tables[table].column("length").to_numpy()

    def view(self, qids, eval_set: str | None = None) -> "tsv.RetrievalData":
        """A RetrievalData of these queries alone (of the top level, or of the named eval set)."""
        return (self.eval_set(eval_set) if eval_set else self.top).view(qids)


class Judged:
    """Queries with their qrels and first-stage run over the prepared passages: the top level or one
    eval set (whose queries are its own table, or the top level's)."""

    def __init__(self, passages: pa.Table, queries: pa.Table, qrels: pa.Table, run: pa.Table, run_path: Path):
        self.passages, self.queries, self.qrels, self.run, self.run_path = passages, queries, qrels, run, run_path
        self._usable = None

    def judged_qids(self) -> list[str]:
        return sorted(pc.unique(self.qrels.column("qid")).to_pylist())

    def usable_qids(self) -> list[str]:
        """Queries both judged and retrieved: the ones that can be trained on or scored."""
        if self._usable is None:
            judged = pc.unique(self.qrels.column("qid"))
            retrieved = pc.unique(self.run.column("qid"))
            self._usable = sorted(pc.filter(judged, pc.is_in(judged, value_set=retrieved)).to_pylist())
        return self._usable

    def view(self, qids) -> "tsv.RetrievalData":
        """A RetrievalData of these queries alone: their texts, judgments, run, and the passages
        those name. Evaluation and judged training pairs run on it as on the TSV reading."""
        value_set = pa.array(sorted(set(qids)), pa.string())
        qrels = self.qrels.filter(pc.is_in(self.qrels.column("qid"), value_set=value_set))
        run = self.run.filter(pc.is_in(self.run.column("qid"), value_set=value_set))
        nested_qrels, nested_run = nest(qrels, "rel"), nest(run, "score")
        rows = np.unique(np.concatenate([run.column("p").to_numpy(), qrels.column("p").to_numpy()]))
        rows = rows[rows >= 0]
        collection = dict(zip(take(self.passages.column("pid"), rows).to_pylist(),
                              take(self.passages.column("text"), rows).to_pylist()))
        q_rows = pc.index_in(value_set, value_set=self.queries.column("qid").combine_chunks())
        known = pc.filter(q_rows, pc.is_valid(q_rows))
        queries = dict(zip(self.queries.column("qid").take(known).to_pylist(),
                           self.queries.column("text").take(known).to_pylist()))
        view = tsv.RetrievalData(collection=collection, queries=queries, qrels=nested_qrels, run=nested_run,
                                 run_path=self.run_path, usable=self.usable_qids())
        view.rows = {"q": dict(zip(queries, known.to_pylist())),
                     "p": dict(zip(collection, rows.tolist()))}
        return view


def take(column: pa.ChunkedArray, rows) -> pa.Array:
    """column[rows], chunk by chunk: Arrow's take on a chunked column first concatenates every chunk,
    which copies the whole memory-mapped column (1.7 GB for 3M passages) into the process."""
    rows = np.asarray(rows, dtype=np.int64)
    if column.num_chunks == 1 or len(rows) == 0:
        return column.chunk(0).take(pa.array(rows)) if column.num_chunks else pa.array([], column.type)
    starts = np.cumsum([0] + [len(chunk) for chunk in column.chunks])
    which = np.searchsorted(starts, rows, side="right") - 1
    order = np.argsort(which, kind="stable")
    parts = [column.chunk(c).take(pa.array(rows[order][which[order] == c] - starts[c]))
             for c in np.unique(which)]
    return pa.concat_arrays(parts).take(pa.array(np.argsort(order, kind="stable")))


def nest(table: pa.Table, value: str) -> dict:
    nested: dict = {}
    for qid, pid, v in zip(*(table.column(c).to_pylist() for c in ("qid", "pid", value))):
        nested.setdefault(qid, {})[pid] = v
    return nested
