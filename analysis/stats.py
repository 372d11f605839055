"""The statistics behind the report: pure functions over plain numbers, no MLflow.

Lion and AdamW are compared on the same held-out test queries. Two kinds of randomness move a
score: which queries were sampled, and how a training run went (its seed). The per-query tests
(paired t, permutation) average each optimizer over its seeds and test across queries, so they
see query variance only: a lucky run shifts every query at once and still looks like consistent
evidence. The seed-aware test (a two-level bootstrap that resamples training runs and queries
within each test fold) sees both, and it alone decides the verdict.
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
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
BOOTSTRAP_CHUNK = 1000  # resamples per batch: keeps memory at chunk × queries whatever the query count


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
class FoldRuns:
    """One test fold: a row per training run (seed), a column per query; both optimizers score the
    same queries in the same column order."""
    lion: np.ndarray
    adamw: np.ndarray


@dataclass(frozen=True)
class SeedAwareTest:
    """Lion minus AdamW, with training runs and queries both resampled."""
    n_queries: int
    n_runs: int  # training runs of the smaller optimizer, over all folds
    mean_diff: float
    ci_low: float
    ci_high: float
    p: float
    resamples: int


def _fold_resamples(fold: FoldRuns, rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` resampled mean differences of one fold: runs drawn with replacement per optimizer,
    then queries drawn with replacement, the same draw for both (the pairing is by query)."""
    n_queries = fold.lion.shape[1]
    lion_w = rng.multinomial(len(fold.lion), np.full(len(fold.lion), 1 / len(fold.lion)), size) / len(fold.lion)
    adamw_w = rng.multinomial(len(fold.adamw), np.full(len(fold.adamw), 1 / len(fold.adamw)), size) / len(fold.adamw)
    query_w = rng.multinomial(n_queries, np.full(n_queries, 1 / n_queries), size) / n_queries
    return ((lion_w @ fold.lion - adamw_w @ fold.adamw) * query_w).sum(axis=1)


def bootstrap_p(resampled: np.ndarray) -> float:
    """Two-sided p from the resampled differences: twice the smaller share on either side of 0,
    so p < ALPHA exactly when the percentile CI excludes 0."""
    return float(min(1.0, 2 * min(np.mean(resampled <= 0), np.mean(resampled >= 0))))


def two_level_bootstrap(folds: list[FoldRuns], resamples: int = BOOTSTRAP_RESAMPLES) -> SeedAwareTest:
    """Percentile CI and p of the query-weighted mean difference; folds are resampled apart (each
    fold's runs are their own training runs and its queries its own), then weighted by query count."""
    folds = [f for f in folds if f.lion.size and f.adamw.size]
    n_queries = sum(f.lion.shape[1] for f in folds)
    if not n_queries:
        return SeedAwareTest(0, 0, math.nan, math.nan, math.nan, math.nan, 0)
    observed = sum((f.lion.mean(axis=0) - f.adamw.mean(axis=0)).sum() for f in folds) / n_queries
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    chunks = []
    for start in range(0, resamples, BOOTSTRAP_CHUNK):
        size = min(BOOTSTRAP_CHUNK, resamples - start)
        chunks.append(sum(_fold_resamples(f, rng, size) * f.lion.shape[1] for f in folds) / n_queries)
    resampled = np.concatenate(chunks)
    low, high = np.quantile(resampled, [ALPHA / 2, 1 - ALPHA / 2])
    n_runs = min(sum(len(f.lion) for f in folds), sum(len(f.adamw) for f in folds))
    return SeedAwareTest(n_queries, n_runs, float(observed), float(low), float(high), bootstrap_p(resampled),
                         resamples)


@dataclass(frozen=True)
class Verdict:
    label: str  # "Lion better", "AdamW better" or "too weak to decide"
    reason: str

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


LION, ADAMW, UNDECIDED = "Lion better", "AdamW better", "too weak to decide"


def bootstrap_p_text(test: SeedAwareTest) -> str:
    """A p of 0 means no resample crossed 0: say how small that bound is, not "0"."""
    return f"< {1 / test.resamples:.2g}" if test.p == 0 else f"= {test.p:.3g}"


def _summary(c: Comparison, seed_test: SeedAwareTest | None, n_seeds: int, metric: str) -> str:
    seed_part = ("no seed-aware test" if seed_test is None or n_seeds < MIN_SEEDS else
                 f"seed-aware 95% CI {seed_test.ci_low:+.4f} to {seed_test.ci_high:+.4f}, p {bootstrap_p_text(seed_test)}")
    return (f"Lion − AdamW {metric} {c.mean_diff:+.4f} ({seed_part}; per-query t-test p = {c.t_p:.3g}, "
            f"permutation p = {c.permutation_p:.3g}), {c.n_queries} queries, {n_seeds} seed(s) per optimizer")


def verdict(comparison: Comparison | None, seed_test: SeedAwareTest | None, n_seeds: int,
            metric: str = "nDCG@10") -> Verdict:
    """Plain-language outcome, decided by the seed-aware test: a difference that one lucky training
    run could produce is no evidence about the optimizer. The per-query tests are context."""
    if comparison is None or comparison.n_queries == 0:
        return Verdict(UNDECIDED, "no test queries scored by both optimizers")
    c = comparison
    summary = _summary(c, seed_test, n_seeds, metric)
    if c.n_queries < MIN_QUERIES:
        return Verdict(UNDECIDED, f"only {c.n_queries} common test queries (need at least {MIN_QUERIES}); {summary}")
    if n_seeds < MIN_SEEDS:
        return Verdict(UNDECIDED, f"a single seed per optimizer cannot separate optimizer from seed luck; {summary}")
    if seed_test is None or math.isnan(seed_test.p):
        return Verdict(UNDECIDED, f"the seed-aware test could not be computed; {summary}")
    if seed_test.p >= ALPHA:
        return Verdict(UNDECIDED, f"the difference is not significant at {ALPHA} once seed variance counts "
                       f"(seed-aware p {bootstrap_p_text(seed_test)}); {summary}")
    return Verdict(LION if seed_test.mean_diff > 0 else ADAMW, summary)


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
