"""From a loaded experiment to the report's numbers: Table I rows and the paired tests, per backbone.

Held-out test scores of the seed reruns of each fold's current best are the evidence
(analysis/evidence.py). A backbone without reruns falls back to
its best trial per optimizer on dev queries, which is one run and selected on the same queries it
is scored on, so the report labels it as such and runs no test on it. Trials are compared at their
final epoch: the epoch a trial was stopped at is the checkpoint it would be used with.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from analysis.evidence import Evidence, FoldKey, best_final_trial, evidence
from analysis.runs import Experiment, Rerun, Search, Trial
from analysis.stats import (UNDECIDED, Comparison, FoldRuns, SeedAwareTest, Verdict, mean_std, paired_comparison,
                            seed_average, two_level_bootstrap, verdict)

__all__ = ["best_final_trial"]  # kept importable from here for callers that pick a trial

METRICS = ("ndcg_at_10", "map", "mrr_at_10")
LABELS = {"ndcg_at_10": "nDCG@10", "map": "MAP", "mrr_at_10": "MRR@10", "recall_at_100": "R@100"}
BACKBONE_NAMES = {"minilm": "MiniLM", "gte": "GTE", "modernbert": "ModernBERT"}
OPTIMIZERS = ("adamw", "lion")
OPTIMIZER_NAMES = {"adamw": "AdamW", "lion": "Lion"}
PRIMARY = "ndcg_at_10"


def backbone_name(space: str) -> str:
    return BACKBONE_NAMES.get(space, space)


def optimizer_name(optimizer: str) -> str:
    return OPTIMIZER_NAMES.get(optimizer, optimizer)


@dataclass
class Backbone:
    """Every search of one space pooled: a --compare-optimizers run has one parent per optimizer."""
    space: str
    searches: list[Search]

    @property
    def all_trials(self) -> list[Trial]:
        return [t for s in self.searches for t in s.trials]

    @property
    def trials(self) -> list[Trial]:
        return [t for t in self.all_trials if t.status == "FINISHED" and t.final(PRIMARY) is not None]

    @cached_property
    def evidence(self) -> Evidence:
        return evidence(self.searches)

    @property
    def reruns(self) -> list[Rerun]:
        """Finished reruns of each fold's current best (of one split); stale ones are left out."""
        return [r for _, r in self.evidence.reruns]

    @property
    def max_epochs(self) -> int | None:
        return max((s.max_epochs for s in self.searches if s.max_epochs), default=None)

    @property
    def data(self) -> str:
        return ", ".join(sorted({s.data for s in self.searches}))

    def optimizers(self) -> list[str]:
        seen = {t.optimizer for t in self.trials} | {r.optimizer for r in self.reruns}
        return [o for o in OPTIMIZERS if o in seen] + sorted(seen - set(OPTIMIZERS))


def backbones(experiment: Experiment) -> list[Backbone]:
    spaces = {s.space for s in experiment.searches}
    order = [s for s in BACKBONE_NAMES if s in spaces] + sorted(spaces - set(BACKBONE_NAMES))
    return [Backbone(space, [s for s in experiment.searches if s.space == space]) for space in order]


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


@dataclass
class Row:
    """One line of Table I."""
    space: str
    optimizer: str
    source: str  # "reruns" (test queries, mean ± std over seeds) or "best trial" (dev queries, one run)
    scores: dict[str, tuple[float, float] | None]  # metric -> (mean, std)
    n_seeds: int
    gpu_util: float | None
    energy_kj: float | None
    trial: Trial | None = None


def pooled_by_seed(reruns: list[Rerun], optimizer: str) -> dict[str, dict[str, dict[str, float]]]:
    """seed -> {qid: {metric: score}}: one seed's reruns on several test folds (cross-validation)
    pooled into one set of test queries; with a single test fold, just that rerun's scores."""
    pooled: dict[str, dict[str, dict[str, float]]] = {}
    for rerun in reruns:
        if rerun.optimizer == optimizer and rerun.per_query is not None:
            pooled.setdefault(rerun.seed, {}).update(rerun.per_query)
    return pooled


def _rerun_row(space: str, optimizer: str, reruns: list[Rerun]) -> Row:
    scores = {}
    pooled = pooled_by_seed(reruns, optimizer)
    for metric in METRICS:
        if pooled:  # per seed: the mean over all its test queries, then mean ± std over seeds
            values = [_mean(q.get(metric) for q in per_query.values()) for per_query in pooled.values()]
        else:
            values = [r.metrics[f"test_{metric}"] for r in reruns if f"test_{metric}" in r.metrics]
        values = [v for v in values if v is not None]
        scores[metric] = mean_std(values) if values else None
    return Row(space, optimizer, "reruns", scores, len(pooled) or len(reruns),
               _mean(r.metrics.get("gpu_util_mean") for r in reruns),
               _mean(r.metrics.get("energy_kj") for r in reruns))


def _trial_row(space: str, optimizer: str, trial: Trial) -> Row:
    scores = {m: (trial.final(m), 0.0) if trial.final(m) is not None else None for m in METRICS}
    util = _mean(v for _, v in trial.history.get("gpu_util_mean", []))
    # energy_kj is logged per epoch, so a trial's energy is the sum over its epochs.
    energy = sum(v for _, v in trial.history["energy_kj"]) if trial.history.get("energy_kj") else None
    return Row(space, optimizer, "best trial", scores, 0, util, energy, trial)


def table_rows(backbone: Backbone) -> list[Row]:
    rows = []
    for optimizer in backbone.optimizers():
        reruns = [r for r in backbone.reruns if r.optimizer == optimizer]
        if reruns:
            rows.append(_rerun_row(backbone.space, optimizer, reruns))
            continue
        trial = best_final_trial([t for t in backbone.trials if t.optimizer == optimizer], backbone.max_epochs)
        if trial is not None:
            rows.append(_trial_row(backbone.space, optimizer, trial))
    return rows


def per_seed_scores(reruns: list[Rerun], optimizer: str, metric: str) -> list[dict[str, float]]:
    """One {qid: score} per seed of this optimizer (its test folds pooled); reruns without
    per-query scores are left out."""
    return [{qid: scores[metric] for qid, scores in per_query.items() if metric in scores}
            for per_query in pooled_by_seed(reruns, optimizer).values()]


def fold_runs(reruns: list[tuple[FoldKey, Rerun]], metric: str) -> list[FoldRuns]:
    """Per test fold, a row per rerun and a column per query every rerun of that fold scored."""
    folds = []
    for test_fold in sorted({key.test_fold for key, _ in reruns}):
        runs = {o: [r.per_query for key, r in reruns if key.test_fold == test_fold and r.optimizer == o
                    and r.per_query is not None] for o in ("lion", "adamw")}
        everyone = runs["lion"] + runs["adamw"]
        if not runs["lion"] or not runs["adamw"]:
            continue
        qids = sorted(set.intersection(*({q for q, m in pq.items() if metric in m} for pq in everyone)))
        matrices = {o: np.array([[pq[q][metric] for q in qids] for pq in runs[o]], dtype=float).reshape(-1, len(qids))
                    for o in runs}
        folds.append(FoldRuns(matrices["lion"], matrices["adamw"]))
    return folds


@dataclass
class PairedResult:
    comparisons: dict[str, Comparison]  # metric -> Lion minus AdamW, per query (seeds averaged)
    seed_tests: dict[str, SeedAwareTest]  # metric -> Lion minus AdamW, training runs and queries resampled
    n_seeds: int  # the smaller seed count of the two optimizers
    verdict: Verdict  # decided on nDCG@10 (the metric the search optimised) by the seed-aware test


def joint_study_verdict(backbone: Backbone) -> Verdict | None:
    joint = backbone.evidence.joint
    if not joint:
        return None
    runs = ", ".join(f"`{s.run_id[:8]}`" for s in joint)
    return Verdict(UNDECIDED, f"the reruns re-train configurations of a joint study ({runs}: both optimizers in one "
                   "TPE study, which shares what it learns between them), so they are no fair evidence for the "
                   "comparison; search with --compare-optimizers")


def paired_tests(backbone: Backbone) -> PairedResult | None:
    """Lion vs AdamW on the reruns' per-query test scores; None when either optimizer has none."""
    reruns = backbone.reruns
    seeds = {o: len(per_seed_scores(reruns, o, PRIMARY)) for o in ("lion", "adamw")}
    if min(seeds.values()) == 0:
        return None
    comparisons = {m: paired_comparison(seed_average(per_seed_scores(reruns, "lion", m)),
                                        seed_average(per_seed_scores(reruns, "adamw", m))) for m in METRICS}
    seed_tests = {m: two_level_bootstrap(fold_runs(backbone.evidence.reruns, m)) for m in METRICS}
    n_seeds = min(seeds.values())
    decided = verdict(comparisons[PRIMARY], seed_tests[PRIMARY], n_seeds, LABELS[PRIMARY])
    return PairedResult(comparisons, seed_tests, n_seeds, joint_study_verdict(backbone) or decided)


def backbone_verdict(backbone: Backbone, paired: PairedResult | None) -> Verdict:
    if paired is not None:
        return paired.verdict
    present = {r.optimizer for r in backbone.reruns if r.per_query is not None}
    missing = " and ".join(optimizer_name(o) for o in ("lion", "adamw") if o not in present)
    return Verdict(UNDECIDED, f"no seed reruns with per-query test scores for {missing}; "
                   "single trials scored on the dev queries they were selected on cannot decide")
