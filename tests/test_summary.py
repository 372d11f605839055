import numpy as np
import pytest

from analysis.runs import Rerun
from analysis.summary import _rerun_row, backbones, paired_tests, pooled_by_seed
from tests.mlflow_store import Store


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


def lucky_seed_store(tmp_path, lion_shifts):
    """Two test folds of 20 queries; AdamW's two seeds agree, Lion's seed s is AdamW + lion_shifts[s]
    on every query of every fold (plus a little query noise)."""
    store = Store(tmp_path)
    rng = np.random.default_rng(5)
    for fold in (0, 1):
        qids = [f"f{fold}q{i:02d}" for i in range(20)]
        base = dict(zip(qids, rng.uniform(0.3, 0.7, len(qids))))
        for optimizer in ("adamw", "lion"):
            parent = store.search(optimizer, test_fold=fold)
            store.trial(parent, f"{optimizer}{fold}", optimizer, [0.5, 0.6])
            for seed in (0, 1):
                shift = lion_shifts[seed] if optimizer == "lion" else 0.0
                per_query = {q: {m: float(base[q] + shift + rng.normal(0, 0.005)) for m in ("ndcg_at_10", "map", "mrr_at_10")}
                             for q in qids}
                store.rerun(parent, f"{optimizer}{fold}", optimizer, seed, per_query)
    return next(b for b in backbones(store.load()) if b.space == "minilm")


def test_a_lucky_seed_is_significant_per_query_but_not_once_seeds_count(tmp_path):
    # Lion's seed 0 is far ahead on every query and its seed 1 behind: consistent within a seed, seeds disagree.
    paired = paired_tests(lucky_seed_store(tmp_path, (0.05, -0.02)))
    per_query, seed_aware = paired.comparisons["ndcg_at_10"], paired.seed_tests["ndcg_at_10"]
    assert per_query.n_queries == seed_aware.n_queries == 40 and paired.n_seeds == 2
    assert per_query.mean_diff == pytest.approx(0.015, abs=0.002) == seed_aware.mean_diff
    assert per_query.t_p < 1e-6 and per_query.permutation_p < 0.001  # "significant" per query
    assert seed_aware.p > 0.3 and seed_aware.ci_low < 0 < seed_aware.ci_high  # not once seeds count
    assert paired.verdict.label == "too weak to decide" and "once seed variance counts" in paired.verdict.reason


def test_seeds_that_agree_decide(tmp_path):
    paired = paired_tests(lucky_seed_store(tmp_path, (0.02, 0.01)))
    assert paired.seed_tests["ndcg_at_10"].p < 0.05 and paired.seed_tests["ndcg_at_10"].ci_low > 0
    assert paired.verdict.label == "Lion better"
