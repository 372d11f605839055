"""MS MARCO training triples: `qid<TAB>pos_pid<TAB>neg_pid` (ids) or `query<TAB>positive<TAB>negative` (text).

A data directory may hold one `triples*.tsv`; trainables.prepared converts it once into integer
rows of the prepared query and passage tables. Id triples must name queries and passages of
queries.tsv and collection.tsv and are read by Arrow in blocks (tens of millions of lines);
text triples bring their own texts, which get ids of their own ("tq…" / "tp…") so they never
collide with the collection's. The first line decides the format of the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainables.data import _lines
from trainables.errors import UsageError

SHAPE = "expected 'qid<TAB>pos_pid<TAB>neg_pid' or three texts"
FLUSH = 100_000  # new texts per append to the prepared tables


def find_triples(directory) -> Path | None:
    found = sorted(Path(directory).glob("triples*.tsv"))
    if len(found) > 1:
        raise UsageError(f"{directory}: several triples files ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


def fields_of(path: Path, number: int, line: str) -> list[str]:
    fields = line.split("\t")
    if len(fields) != 3 or not all(field.strip() for field in fields):
        raise UsageError(f"{path}:{number}: {SHAPE}, got {line[:80]!r}")
    return fields


def prepare_triples(path: Path, queries, passages, qids: pa.Array, pids: pa.Array) -> pa.Table:
    """The triples as (q, pos, neg) rows; text triples' texts are appended to `queries`/`passages`."""
    first = next(_lines(path), None)
    if first is None:
        raise UsageError(f"{path}: no triples in file")
    q, pos, neg = fields_of(path, *first)
    as_ids = (pc.is_in(pa.array([q], pa.string()), value_set=qids)[0].as_py()
              and pc.all(pc.is_in(pa.array([pos, neg], pa.string()), value_set=pids)).as_py())
    return id_triples(path, qids, pids) if as_ids else text_triples(path, queries, passages)


def id_triples(path: Path, qids: pa.Array, pids: pa.Array) -> pa.Table:
    from trainables.prepared import stream_tsv
    columns: dict[str, list] = {"q": [], "pos": [], "neg": []}
    try:
        for batch in stream_tsv(path, ["q", "pos", "neg"]):
            for name, ids, value_set in zip(columns, batch.columns, (qids, pids, pids)):
                rows = pc.index_in(ids, value_set=value_set)
                if rows.null_count:
                    raise ValueError("unknown id")
                columns[name].append(rows.cast(pa.int32()))
    except (pa.ArrowInvalid, ValueError):
        first_bad_id_line(path, set(qids.to_pylist()), set(pids.to_pylist()))
        raise UsageError(f"{path}: not a valid triples file") from None
    return pa.table({name: pa.concat_arrays(parts) if parts else pa.array([], pa.int32())
                     for name, parts in columns.items()})


def first_bad_id_line(path: Path, qids: set, pids: set) -> None:
    """Raise the file:line error of the first bad line (only ever called once one is known to exist)."""
    for number, line in _lines(path):
        fields = fields_of(path, number, line)
        for field, known in zip(fields, (qids, pids, pids)):
            if field not in known:
                raise UsageError(f"{path}:{number}: id {field!r} is not in queries.tsv / collection.tsv")


def text_triples(path: Path, queries, passages) -> pa.Table:
    """Each distinct text one new row; ids count texts of both kinds in order of first sight."""
    text_ids: dict[tuple[str, str], int] = {}
    new = {"tq": ([], queries), "tp": ([], passages)}
    base = {"tq": queries.rows, "tp": passages.rows}
    count = {"tq": 0, "tp": 0}

    def row(kind: str, text: str) -> int:
        key = (kind, text)
        if key not in text_ids:
            new[kind][0].append((f"{kind}{len(text_ids)}", text))
            text_ids[key] = base[kind] + count[kind]
            count[kind] += 1
            if len(new[kind][0]) >= FLUSH:
                flush(*new[kind])
        return text_ids[key]

    triples = [(row("tq", q), row("tp", pos), row("tp", neg))
               for number, line in _lines(path) for q, pos, neg in [fields_of(path, number, line)]]
    for pending, table in new.values():
        flush(pending, table)
    q, pos, neg = (np.array(column, dtype=np.int32) for column in zip(*triples))
    return pa.table({"q": q, "pos": pos, "neg": neg})


def flush(pending: list, table) -> None:
    if pending:
        table.append(pa.array([key for key, _ in pending], pa.string()),
                     pa.array([text for _, text in pending], pa.string()))
        pending.clear()


def triple_pairs(prepared, excluded_qids, limit: int | None, seed: int):
    """Pairs of every triple whose query is not excluded (dev and test queries, matched by id and,
    for text triples, by text), at most `limit` triples as a seeded sample."""
    from trainables.pairs import TriplePairs, kept_triples
    table = prepared.tables.get("triples")
    if table is None:
        raise UsageError(f"{prepared.folder}: the prepared data has no triples")
    q, pos, neg = (table.column(name).to_numpy() for name in ("q", "pos", "neg"))
    excluded = pa.array(sorted(set(excluded_qids)), pa.string())
    by_id = pc.index_in(excluded, value_set=prepared.queries.column("qid").combine_chunks())
    texts = prepared.queries.column("text").take(pc.drop_null(by_id))
    queried = np.unique(q)
    same_text = pc.is_in(prepared.queries.column("text").take(pa.array(queried)), value_set=texts.combine_chunks()
                         if isinstance(texts, pa.ChunkedArray) else texts)
    rows = np.union1d(pc.drop_null(by_id).to_numpy(), queried[same_text.to_numpy(zero_copy_only=False)])
    return TriplePairs(q, pos, neg, kept_triples(q, rows, limit, seed))
