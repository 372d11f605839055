"""MS MARCO training triples: `qid<TAB>pos_pid<TAB>neg_pid` (ids) or `query<TAB>positive<TAB>negative` (text).

A data directory may hold one `triples*.tsv`. Id triples must name queries and passages of
queries.tsv and collection.tsv; text triples bring their own texts, which get ids of their own
("tq…" / "tp…") so they never collide with the collection's. Triples whose query is a dev query
are dropped: the dev queries must stay unseen.
"""
from __future__ import annotations

from pathlib import Path

from trainables.data import Pair, RetrievalData, _lines
from trainables.errors import UsageError


def find_triples(directory) -> Path | None:
    found = sorted(Path(directory).glob("triples*.tsv"))
    if len(found) > 1:
        raise UsageError(f"{directory}: several triples files ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


def read_triples(path: Path, data: RetrievalData, limit: int | None = None) -> list[tuple[str, str, str]]:
    """(qid, pos_pid, neg_pid) per line; text triples are added to data.queries / data.collection."""
    triples: list[tuple[str, str, str]] = []
    as_ids = None
    text_ids: dict[tuple[str, str], str] = {}

    def text_id(kind: str, text: str, table: dict) -> str:
        key = (kind, text)
        if key not in text_ids:
            text_ids[key] = f"{kind}{len(text_ids)}"
            table[text_ids[key]] = text
        return text_ids[key]

    for number, line in _lines(path):
        if limit is not None and len(triples) >= limit:
            break
        fields = line.split("\t")
        if len(fields) != 3 or not all(field.strip() for field in fields):
            raise UsageError(f"{path}:{number}: expected 'qid<TAB>pos_pid<TAB>neg_pid' or three texts, "
                             f"got {line[:80]!r}")
        ids = fields[0] in data.queries and fields[1] in data.collection and fields[2] in data.collection
        if as_ids is None:
            as_ids = ids  # the first line decides the format of the file
        if as_ids and not ids:
            unknown = next(f for f, table in zip(fields, (data.queries, data.collection, data.collection))
                           if f not in table)
            raise UsageError(f"{path}:{number}: id {unknown!r} is not in queries.tsv / collection.tsv")
        if as_ids:
            triples.append((fields[0], fields[1], fields[2]))
        else:
            triples.append((text_id("tq", fields[0], data.queries), text_id("tp", fields[1], data.collection),
                            text_id("tp", fields[2], data.collection)))
    if not triples:
        raise UsageError(f"{path}: no triples in file")
    return triples


def triple_pairs(triples, data: RetrievalData, dev_qids) -> list[Pair]:
    """A positive and a negative pair per triple, leaving out every triple of a dev query
    (matched by id, and by text for text triples)."""
    dev_texts = {data.queries[q] for q in dev_qids}
    dev_ids = set(dev_qids)
    pairs = []
    for qid, pos, neg in triples:
        if qid in dev_ids or data.queries[qid] in dev_texts:
            continue
        pairs += [Pair(qid, pos, 1.0), Pair(qid, neg, 0.0)]
    if not pairs:
        raise UsageError("every training triple belongs to a dev query: nothing left to train on")
    return pairs
