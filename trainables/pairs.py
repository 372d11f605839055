"""Training pairs as rows of the prepared tables: no pair is a Python object, so tens of millions of
triples cost a few bytes each and the text is read only for the pairs of the current step."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainables.errors import UsageError


@dataclass
class PairRows:
    """Pair i is (query row q[i], passage row p[i], label[i])."""

    q: np.ndarray
    p: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.q)

    def rows(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        return self.q[indices], self.p[indices], self.label[indices]


class TriplePairs:
    """Each kept triple t gives pair 2i (its query, positive, 1) and 2i+1 (its query, negative, 0),
    read from the memory-mapped triple columns on demand."""

    def __init__(self, q: np.ndarray, pos: np.ndarray, neg: np.ndarray, kept: np.ndarray | None):
        self.q, self.pos, self.neg, self.kept = q, pos, neg, kept

    def __len__(self) -> int:
        return 2 * (len(self.q) if self.kept is None else len(self.kept))

    def rows(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        triple, negative = indices // 2, indices % 2 == 1
        if self.kept is not None:
            triple = self.kept[triple]
        passage = np.where(negative, self.neg[triple], self.pos[triple])
        return self.q[triple], passage, (~negative).astype(np.float32)


def from_judged(pairs, rows: dict) -> PairRows:
    """Judged pairs (trainables.data.Pair, ids) as rows, via a view's id → row maps."""
    return PairRows(q=np.array([rows["q"][p.qid] for p in pairs], dtype=np.int64),
                    p=np.array([rows["p"][p.pid] for p in pairs], dtype=np.int64),
                    label=np.array([p.label for p in pairs], dtype=np.float32))


def kept_triples(q: np.ndarray, excluded_rows: np.ndarray, limit: int | None, seed: int) -> np.ndarray | None:
    """Indices of the triples to train on: none of an excluded (dev or test) query's, and at most
    `limit`, a seeded sample kept in file order. None: every triple."""
    keep = ~np.isin(q, excluded_rows)
    if not keep.any():
        raise UsageError("every training triple belongs to a dev query: nothing left to train on")
    if keep.all() and (limit is None or limit >= len(q)):
        return None
    kept = np.flatnonzero(keep)
    if limit is not None and limit < len(kept):
        kept = np.sort(np.random.default_rng(seed).choice(kept, size=limit, replace=False))
    return kept


def pair_lengths(pairs, query_lengths: np.ndarray, passage_lengths: np.ndarray) -> np.ndarray:
    """Characters per (query, passage) pair: a cheap, rank-independent proxy for token count."""
    q, p, _ = pairs.rows(np.arange(len(pairs)))
    return query_lengths[q] + passage_lengths[p]
