import pytest

from analysis.runs import Rerun
from analysis.summary import _rerun_row, pooled_by_seed


def rerun(seed, per_query, optimizer="lion"):
    return Rerun("r", "FINISHED", optimizer, seed, "t", {}, {}, {}, per_query)


def test_cross_validated_reruns_pool_each_seed_over_its_test_folds():
    fold0 = {"q1": {"ndcg_at_10": 0.2}, "q2": {"ndcg_at_10": 0.4}}
    fold1 = {"q3": {"ndcg_at_10": 0.9}}
    reruns = [rerun("0", fold0), rerun("0", fold1), rerun("1", {q: {"ndcg_at_10": 0.5} for q in ("q1", "q2", "q3")}),
              rerun("0", {"q9": {"ndcg_at_10": 1.0}}, optimizer="adamw")]
    pooled = pooled_by_seed(reruns, "lion")
    assert set(pooled) == {"0", "1"} and set(pooled["0"]) == {"q1", "q2", "q3"}
    row = _rerun_row("minilm", "lion", [r for r in reruns if r.optimizer == "lion"])
    mean, std = row.scores["ndcg_at_10"]
    assert row.n_seeds == 2 and mean == pytest.approx((0.5 + 0.5) / 2) and std == pytest.approx(0.0)
