"""Data dirs with eval sets (eval/<name>/), cut from a real data dir by query."""
from __future__ import annotations

import random
import shutil
from pathlib import Path


def by_query(path: Path) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.strip():
            lines.setdefault(line.split()[0], []).append(line)
    return lines


def hold_out(source: Path, target: Path, name: str, fraction: float = 1 / 3, seed: int = 0,
             own_queries: bool = False) -> list[str]:
    """target: source's collection and queries, with a seeded `fraction` of its judged queries
    moved (qrels and run) into target/eval/<name>/; their texts stay in the top-level queries.tsv,
    or with own_queries move to the set's own queries.tsv. Returns the held-out qids, sorted."""
    target.mkdir(parents=True)
    shutil.copy(source / "collection.tsv", target / "collection.tsv")
    run_name = "run.bm25.trec"
    qrels, run = by_query(source / "qrels.txt"), by_query(source / run_name)
    qids = sorted(qrels)
    random.Random(seed).shuffle(qids)
    held = set(qids[:round(len(qids) * fraction)])
    folder = target / "eval" / name
    folder.mkdir(parents=True)
    for file, lines in (("qrels.txt", qrels), (run_name, run)):
        (target / file).write_text("".join(l for q, ls in lines.items() if q not in held for l in ls))
        (folder / file).write_text("".join(l for q, ls in lines.items() if q in held for l in ls))
    queries = by_query_tsv(source / "queries.tsv")
    keep = {q: line for q, line in queries.items() if not (own_queries and q in held)}
    (target / "queries.tsv").write_text("".join(keep.values()))
    if own_queries:
        (folder / "queries.tsv").write_text("".join(queries[q] for q in sorted(held)))
    return sorted(held)


def by_query_tsv(path: Path) -> dict[str, str]:
    return {line.split("\t", 1)[0]: line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
            if line.strip()}
