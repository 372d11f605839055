"""Listwise groups from judged data: a positive and its own hard negatives, consecutive."""
import pytest

from tests.conftest import EMBEDDED
from trainables.data import RetrievalData, split_queries
from trainables.errors import UsageError
from trainables.groups import training_groups


@pytest.fixture(scope="module")
def data():
    return RetrievalData.load(EMBEDDED)


def test_each_group_is_a_positive_then_its_queries_negatives(data):
    train, _ = split_queries(data, 0.2, seed=0)
    pairs = training_groups(data, train[:10], negatives_per_query=3, negative_depth=20, positive_level=2, seed=0)
    assert len(pairs) % 4 == 0 and len(pairs) >= 40
    for start in range(0, len(pairs), 4):
        group = pairs[start:start + 4]
        assert [p.label for p in group] == [1.0, 0.0, 0.0, 0.0] and len({p.qid for p in group}) == 1
        judged = data.qrels[group[0].qid]
        assert judged[group[0].pid] >= 2 and all(judged.get(p.pid, 0) == 0 for p in group[1:])
        top = [pid for pid, _ in sorted(data.run[group[0].qid].items(), key=lambda kv: -kv[1])[:20]]
        assert all(p.pid in top for p in group[1:]) and len({p.pid for p in group[1:]}) == 3
    assert pairs == training_groups(data, train[:10], 3, 20, 2, seed=0)  # seeded: every rank the same


def test_too_few_candidates_for_a_group_is_an_error(data):
    train, _ = split_queries(data, 0.2, seed=0)
    with pytest.raises(UsageError, match="no listwise training groups"):
        training_groups(data, train[:5], negatives_per_query=50, negative_depth=10, positive_level=2, seed=0)
