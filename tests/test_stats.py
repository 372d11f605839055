"""analysis.stats against values worked out here from the formulas (and by exact enumeration)."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.stats import (Comparison, mean_std, overall_verdict, paired_comparison, seed_average, verdict)

# Lion minus AdamW per query: 0.02, 0.05, -0.01, 0.04, 0.03, 0.00 (six queries, every sign pattern enumerable)
ADAMW = {"a": 0.50, "b": 0.40, "c": 0.70, "d": 0.20, "e": 0.60, "f": 0.35}
LION = {"a": 0.52, "b": 0.45, "c": 0.69, "d": 0.24, "e": 0.63, "f": 0.35, "only-lion": 0.9}


def test_mean_std_uses_sample_std():
    assert mean_std([1, 2, 3, 4]) == pytest.approx((2.5, math.sqrt(((1.5 ** 2) * 2 + (0.5 ** 2) * 2) / 3)))
    assert mean_std([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_seed_average_keeps_queries_every_seed_scored():
    assert seed_average([{"q1": 0.2, "q2": 0.4}, {"q1": 0.4, "q3": 1.0}]) == {"q1": pytest.approx(0.3)}
    assert seed_average([]) == {}


def test_paired_comparison_by_hand():
    c = paired_comparison(LION, ADAMW)
    diffs = np.array([0.02, 0.05, -0.01, 0.04, 0.03, 0.00])
    mean, sd, n = diffs.mean(), diffs.std(ddof=1), 6
    assert c.n_queries == 6 and c.exact  # "only-lion" has no AdamW partner
    assert c.mean_diff == pytest.approx(mean)
    t = mean / (sd / math.sqrt(n))
    assert c.t_p == pytest.approx(2 * scipy_stats.t.sf(t, n - 1))
    half = 2.5705818366147395 * sd / math.sqrt(n)  # t(0.975, 5), from tables
    assert (c.ci_low, c.ci_high) == pytest.approx((mean - half, mean + half))
    # Exact permutation over all 2**6 sign patterns; the null is symmetric, so the two-sided p is
    # the share of patterns whose |sum| reaches the observed one.
    null = [np.dot(signs, diffs) for signs in itertools.product((1, -1), repeat=n)]
    extreme = sum(abs(s) >= abs(diffs.sum()) - 1e-12 for s in null)
    assert c.permutation_p == pytest.approx(extreme / 2 ** n)  # symmetric null: two-sided = both tails


def test_permutation_is_exact_beyond_scipys_default_resamples_and_seeded_beyond_20():
    rng = np.random.default_rng(0)
    # 16 queries: 65,536 sign patterns, more than the default 9,999 resamples, still enumerated
    lion = {f"q{i}": v for i, v in enumerate(rng.uniform(size=16))}
    adamw = {q: v - 0.02 + rng.normal(0, 0.05) for q, v in lion.items()}
    diffs = np.array([lion[q] - adamw[q] for q in sorted(lion)])
    signs = np.array(list(itertools.product((1, -1), repeat=16)))
    null = np.abs((signs * diffs).mean(axis=1))
    c = paired_comparison(lion, adamw)
    assert c.exact and c.permutation_p == pytest.approx(np.mean(null >= abs(diffs.mean()) - 1e-12))
    lion = {f"q{i}": v for i, v in enumerate(rng.uniform(size=30))}
    adamw = {q: v + rng.normal(0, 0.1) for q, v in lion.items()}
    first, second = paired_comparison(lion, adamw), paired_comparison(lion, adamw)
    assert not first.exact and first.permutation_p == second.permutation_p  # same seed, same p
    assert first.permutation_p == pytest.approx(first.t_p, abs=0.05)  # both test the same mean difference


def test_degenerate_inputs_give_nan_not_errors():
    single = paired_comparison({"q": 0.5}, {"q": 0.4})
    assert single.n_queries == 1 and math.isnan(single.t_p) and math.isnan(single.permutation_p)
    assert paired_comparison({}, {"q": 0.4}).n_queries == 0


def comparison(n=30, diff=0.02, p=0.01) -> Comparison:
    return Comparison(n, diff, diff - 0.01, diff + 0.01, p, p, n <= 20)


@pytest.mark.parametrize("c, seeds, label, because", [
    (comparison(), 3, "Lion better", "Lion − AdamW nDCG@10 +0.0200"),
    (comparison(diff=-0.02), 3, "AdamW better", "-0.0200"),
    (comparison(p=0.2), 3, "too weak to decide", "not significant at 0.05"),
    (Comparison(30, 0.02, 0.01, 0.03, 0.01, 0.06, False), 3, "too weak to decide", "larger p = 0.06"),
    (comparison(n=8), 3, "too weak to decide", "only 8 common test queries"),
    (comparison(), 1, "too weak to decide", "a single seed"),
    (Comparison(30, 0.0, math.nan, math.nan, math.nan, math.nan, False), 3, "too weak to decide", "no spread"),
    (None, 3, "too weak to decide", "no test queries"),
])
def test_verdict(c, seeds, label, because):
    v = verdict(c, seeds)
    assert v.label == label and because in v.reason


def test_overall_verdict():
    lion, adamw, weak = verdict(comparison(), 3), verdict(comparison(diff=-0.02), 3), verdict(comparison(n=5), 3)
    assert overall_verdict({"minilm": lion, "gte": lion}).label == "Lion better"
    assert "disagree" in overall_verdict({"minilm": lion, "gte": adamw}).reason
    assert overall_verdict({"minilm": lion, "gte": weak}).label == "too weak to decide"
    assert overall_verdict({}).label == "too weak to decide"
