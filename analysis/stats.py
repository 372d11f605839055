"""The statistics behind the report: pure functions over plain numbers, no MLflow.

Lion and AdamW are compared per query (Lion minus AdamW) on the same held-out test queries. Each
optimizer's per-query score is first averaged over its seeds, so the unit of the paired tests is
the query: that is where the variance of a retrieval metric lives, and it keeps a seed with an
unlucky draw from counting as extra, independent evidence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
MIN_QUERIES = 10  # below this a paired test on retrieval metrics says little whatever its p-value
MIN_SEEDS = 2  # one seed per optimizer cannot separate the optimizer from the luck of the draw
PERMUTATION_RESAMPLES = 9999
PERMUTATION_SEED = 0
EXACT_UP_TO = 20  # 2**20 sign patterns is still quick; beyond it the permutation test samples


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1); the std of a single value is 0."""
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        raise ValueError("mean_std needs at least one value")
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), std


def seed_average(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """{qid: mean over seeds}, over the queries every seed scored."""
    if not per_seed:
        return {}
    common = set.intersection(*(set(scores) for scores in per_seed))
    return {qid: sum(scores[qid] for scores in per_seed) / len(per_seed) for qid in sorted(common)}


@dataclass(frozen=True)
class Comparison:
    """Lion minus AdamW over the queries both scored."""
    n_queries: int
    mean_diff: float
    ci_low: float
    ci_high: float
    t_p: float
    permutation_p: float
    exact: bool  # True when the permutation p-value enumerates every sign pattern


def _mean_difference(x, y, axis):
    return np.mean(x - y, axis=axis)


def paired_comparison(lion: dict[str, float], adamw: dict[str, float]) -> Comparison:
    """Paired t-test, t-based 95% CI of the mean difference and a paired permutation test."""
    qids = sorted(set(lion) & set(adamw))
    x = np.array([lion[q] for q in qids], dtype=float)
    y = np.array([adamw[q] for q in qids], dtype=float)
    n = len(qids)
    if n < 2:  # neither a spread nor a permutation distribution exists
        diff = float(np.mean(x - y)) if n else math.nan
        return Comparison(n, diff, math.nan, math.nan, math.nan, math.nan, False)
    diffs = x - y
    mean = float(diffs.mean())
    half_width = stats.t.ppf(1 - ALPHA / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n)
    t_p = float(stats.ttest_rel(x, y).pvalue)
    # scipy enumerates all 2**n swaps of each pair when n_resamples reaches that count.
    exact = n <= EXACT_UP_TO
    permutation = stats.permutation_test(
        (x, y), _mean_difference, permutation_type="samples", vectorized=True, alternative="two-sided",
        n_resamples=2 ** n if exact else PERMUTATION_RESAMPLES, batch=2 ** 16, random_state=PERMUTATION_SEED)
    return Comparison(n, mean, float(mean - half_width), float(mean + half_width), t_p,
                      float(permutation.pvalue), exact)


@dataclass(frozen=True)
class Verdict:
    label: str  # "Lion better", "AdamW better" or "too weak to decide"
    reason: str

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


LION, ADAMW, UNDECIDED = "Lion better", "AdamW better", "too weak to decide"


def verdict(comparison: Comparison | None, n_seeds: int, metric: str = "nDCG@10") -> Verdict:
    """Plain-language outcome. Both p-values must be below ALPHA: the t-test leans on normality,
    the permutation test does not, and a decision should not hinge on which one was asked."""
    if comparison is None or comparison.n_queries == 0:
        return Verdict(UNDECIDED, "no test queries scored by both optimizers")
    c = comparison
    summary = (f"Lion − AdamW {metric} {c.mean_diff:+.4f} (95% CI {c.ci_low:+.4f} to {c.ci_high:+.4f}), "
               f"t-test p = {c.t_p:.3g}, permutation p = {c.permutation_p:.3g}, "
               f"{c.n_queries} queries, {n_seeds} seed(s) per optimizer")
    if c.n_queries < MIN_QUERIES:
        return Verdict(UNDECIDED, f"only {c.n_queries} common test queries (need at least {MIN_QUERIES}); {summary}")
    if n_seeds < MIN_SEEDS:
        return Verdict(UNDECIDED, f"a single seed per optimizer cannot separate optimizer from seed luck; {summary}")
    p = max(c.t_p, c.permutation_p)
    if math.isnan(p):
        return Verdict(UNDECIDED, f"the per-query differences have no spread, so no test applies; {summary}")
    if p >= ALPHA:
        return Verdict(UNDECIDED, f"the difference is not significant at {ALPHA} (larger p = {p:.3g}); {summary}")
    return Verdict(LION if c.mean_diff > 0 else ADAMW, summary)


def overall_verdict(per_backbone: dict[str, Verdict]) -> Verdict:
    """One answer across backbones: a winner only when every backbone agrees and none is undecided."""
    if not per_backbone:
        return Verdict(UNDECIDED, "no backbone has a paired comparison")
    labels = [v.label for v in per_backbone.values()]
    tally = ", ".join(f"{label} on {labels.count(label)}" for label in (LION, ADAMW, UNDECIDED) if label in labels)
    if len(set(labels)) == 1 and labels[0] != UNDECIDED:
        return Verdict(labels[0], f"every backbone agrees ({tally} of {len(labels)})")
    if LION in labels and ADAMW in labels:
        return Verdict(UNDECIDED, f"the backbones disagree ({tally} of {len(labels)}): no single winner")
    return Verdict(UNDECIDED, f"the evidence is too weak on some backbones ({tally} of {len(labels)})")
