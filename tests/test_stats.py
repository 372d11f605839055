"""analysis.stats against values worked out here from the formulas (and by exact enumeration)."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.stats import (Comparison, FoldRuns, SeedAwareTest, bootstrap_p, mean_std, overall_verdict,
                            paired_comparison, seed_average, two_level_bootstrap, verdict)

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


def seed_test(diff=0.02, p=0.01) -> SeedAwareTest:
    return SeedAwareTest(30, 3, diff, diff - 0.015, diff + 0.015, p, 9999)


@pytest.mark.parametrize("c, b, seeds, label, because", [
    (comparison(), seed_test(), 3, "Lion better", "Lion − AdamW nDCG@10 +0.0200"),
    (comparison(diff=-0.02), seed_test(diff=-0.02), 3, "AdamW better", "-0.0200"),
    (comparison(p=0.2), seed_test(p=0.2), 3, "too weak to decide", "not significant at 0.05"),
    # the per-query tests say "significant", the seed-aware one does not: the seed-aware one decides
    (comparison(p=1e-6), seed_test(p=0.3), 3, "too weak to decide", "seed-aware p = 0.3"),
    (comparison(p=0.2), seed_test(p=0.0), 3, "Lion better", "p < 0.0001"),
    (comparison(n=8), seed_test(), 3, "too weak to decide", "only 8 common test queries"),
    (comparison(), seed_test(), 1, "too weak to decide", "a single seed"),
    (comparison(), None, 3, "too weak to decide", "could not be computed"),
    (None, None, 3, "too weak to decide", "no test queries"),
])
def test_verdict(c, b, seeds, label, because):
    v = verdict(c, b, seeds)
    assert v.label == label and because in v.reason


def test_overall_verdict():
    lion, adamw = verdict(comparison(), seed_test(), 3), verdict(comparison(diff=-0.02), seed_test(diff=-0.02), 3)
    weak = verdict(comparison(n=5), seed_test(), 3)
    assert overall_verdict({"minilm": lion, "gte": lion}).label == "Lion better"
    assert "disagree" in overall_verdict({"minilm": lion, "gte": adamw}).reason
    assert overall_verdict({"minilm": lion, "gte": weak}).label == "too weak to decide"
    assert overall_verdict({}).label == "too weak to decide"


def test_bootstrap_p_is_twice_the_smaller_tail():
    assert bootstrap_p(np.array([-1.0, 1.0, 2.0, 3.0])) == 0.5
    assert bootstrap_p(np.array([1.0, 2.0])) == 0.0 and bootstrap_p(np.array([0.0, 0.0])) == 1.0


def test_one_run_each_is_a_query_bootstrap_close_to_the_t_interval():
    # With a single run per optimizer only queries are redrawn: the percentile CI of a mean of 200
    # paired differences is close to the t interval.
    rng = np.random.default_rng(1)
    adamw = rng.uniform(0.2, 0.8, (1, 200))
    lion = adamw + 0.01 + rng.normal(0, 0.05, (1, 200))
    b = two_level_bootstrap([FoldRuns(lion, adamw)])
    c = paired_comparison(dict(enumerate(lion[0])), dict(enumerate(adamw[0])))
    assert b.mean_diff == pytest.approx(c.mean_diff) and b.n_queries == 200 and b.n_runs == 1
    assert b.ci_high - b.ci_low == pytest.approx(c.ci_high - c.ci_low, rel=0.1)
    assert b.ci_low == pytest.approx(c.ci_low, abs=0.002) and b.p == pytest.approx(c.t_p, abs=0.02)


def test_folds_weigh_by_queries_and_disagreeing_seeds_widen_the_interval():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.7, 30)
    adamw = np.stack([base, base])
    agree = FoldRuns(np.stack([base + 0.02, base + 0.02]), adamw)
    disagree = FoldRuns(np.stack([base + 0.06, base - 0.02]), adamw)
    small = FoldRuns(np.stack([base[:10] + 0.1]), adamw[:, :10])  # 10 queries: a quarter of the weight
    assert two_level_bootstrap([agree, small]).mean_diff == pytest.approx((30 * 0.02 + 10 * 0.1) / 40)
    narrow, wide = two_level_bootstrap([agree]), two_level_bootstrap([disagree])
    assert narrow.mean_diff == pytest.approx(wide.mean_diff) == pytest.approx(0.02)
    assert (narrow.ci_low, narrow.ci_high) == pytest.approx((0.02, 0.02)) and narrow.p == 0.0
    # Lion's runs are +0.06 or -0.02: a resample that draws the second twice (1 in 4) lands below 0
    assert wide.ci_low == pytest.approx(-0.02) and wide.p == pytest.approx(0.5, abs=0.03)
    assert math.isnan(two_level_bootstrap([]).p)
