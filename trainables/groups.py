"""Listwise training groups from judged data: each judged positive of a training query with
k = negatives_per_query first-stage hard negatives of the same query, as consecutive pairs
(positive first), so trainables.data.worker_batches can keep every group in one micro-batch."""
from __future__ import annotations

import random

from trainables.data import Pair, RetrievalData, ranked
from trainables.errors import UsageError


def training_groups(data: RetrievalData, qids: list[str], negatives_per_query: int, negative_depth: int,
                    positive_level: int, seed: int) -> list[Pair]:
    """Groups of 1 + negatives_per_query pairs, one per (training query, positive), each with its
    own seeded sample of the query's unjudged (or judged 0) top negative_depth candidates. A query
    with fewer candidates than that cannot fill a group and is left out."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for qid in qids:
        judged = data.qrels.get(qid, {})
        positives = [pid for pid, rel in sorted(judged.items()) if rel >= positive_level and pid in data.collection]
        candidates = [pid for pid, _ in ranked(data.run.get(qid, {}))[:negative_depth] if judged.get(pid, 0) == 0]
        if len(candidates) < negatives_per_query:
            continue  # a short group would break the fixed group size every batch is cut by
        for pid in positives:
            pairs.append(Pair(qid, pid, 1.0))
            pairs.extend(Pair(qid, neg, 0.0) for neg in rng.sample(candidates, negatives_per_query))
    if not pairs:
        raise UsageError(f"no listwise training groups: no training query has a judged positive (rel >= "
                         f"{positive_level}) and {negatives_per_query} first-stage negatives")
    return pairs
