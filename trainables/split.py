"""Which queries a trial trains on, scores each epoch (dev) and holds out, from the prepared data.

Without a dev set: today's seeded split of the top-level judged queries (and, with folds, a test
fold), dev cut to its first max_dev_queries. With cfg.dev_set: that eval set's queries are the dev
queries (a seeded sample of max_dev_queries) and every usable top-level query is a training query.
Either way no query judged in an eval set is trained on (matched by id).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from trainables.data import three_way_split


@dataclass
class QuerySplit:
    train: list[str]
    dev: list[str]  # scored each epoch
    scored: list[str]  # top-level queries a trial may score: every dev and test query of the split
    test: list[str]  # the top-level test fold (folds > 0), else []
    excluded: list[str]  # never trained on: every dev and test query, and every eval set's


def split_queries(prepared, cfg) -> QuerySplit:
    in_eval_sets = {q for judged in prepared.eval_sets.values() for q in judged.judged_qids()}
    if cfg.dev_set:
        dev_all = prepared.eval_set(cfg.dev_set).usable_qids()
        train, dev, test = prepared.usable_qids(), sample(dev_all, cfg.max_dev_queries, cfg.split_seed), []
        scored = []
    else:
        train, dev_all, test = three_way_split(prepared.view([]), cfg.dev_fraction, cfg.split_seed, cfg.folds,
                                               cfg.test_fold)
        dev, scored = dev_all[:cfg.max_dev_queries], dev_all + test  # first N: earlier results stay as they were
    train = [q for q in train if q not in in_eval_sets][:cfg.max_train_queries]
    return QuerySplit(train, dev, scored, test, sorted(set(dev_all + test) | in_eval_sets))


def sample(qids: list[str], limit: int | None, seed: int) -> list[str]:
    """A seeded sample of `limit` queries (all when None), sorted."""
    if limit is None or limit >= len(qids):
        return list(qids)
    return sorted(random.Random(seed).sample(sorted(qids), limit))
