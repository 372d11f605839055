"""Which runs count as evidence for Lion vs AdamW, shared by search.rerun (what to re-train) and the
report (what to pool).

A test fold is named by (data, folds, split_seed, test_fold): the same fold number of another
split or data set holds other queries, and a search without folds has no test queries at all.
Per fold and optimizer the current best is the best final-epoch trial of the FINISHED searches
(a KILLED one may still change its best when resumed). Only reruns of that trial count: reruns of
an earlier best would mix two configurations per seed. The folds of one split pool into one set
of test queries; when several splits have reruns, the one covering most folds is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from analysis.runs import Rerun, Search, Trial

PRIMARY = "ndcg_at_10"


@dataclass(frozen=True)
class FoldKey:
    data: str
    folds: int
    split_seed: str
    test_fold: int

    @property
    def split(self) -> tuple[str, int, str]:
        """The cross-validation split this fold belongs to: its folds' test queries are disjoint."""
        return self.data, self.folds, self.split_seed


def _param(search: Search, name: str) -> str | None:
    """A search parent's param, else its trials' (every trial of a search shares the fixed ones)."""
    if name in search.params:
        return search.params[name]
    return next((t.params[name] for t in search.trials if name in t.params), None)


def fold_key(search: Search) -> FoldKey | None:
    """The search's test fold; None when it kept none (folds < 2), so it has no test queries."""
    folds = _param(search, "folds")
    if folds is None or not folds.isdigit() or int(folds) < 2:
        return None
    return FoldKey(search.data, int(folds), _param(search, "split_seed") or "0", int(_param(search, "test_fold") or 0))


def is_joint(search: Search) -> bool:
    """Both optimizers in one TPE study: the sampler shares what it learns across them, so their
    budgets and regimes are not separate and the comparison is not fair."""
    return search.optimizer is None


def best_final_trial(trials: list[Trial], max_epochs: int | None) -> Trial | None:
    """Highest final-epoch nDCG@10; trials that ran every epoch first, as the search itself picks."""
    trials = [t for t in trials if t.status == "FINISHED" and t.final(PRIMARY) is not None]
    complete = [t for t in trials if max_epochs is not None and t.epochs >= max_epochs]
    return max(complete or trials, key=lambda t: t.final(PRIMARY), default=None)


@dataclass
class Choice:
    """The current best configuration of one (test fold, optimizer)."""
    key: FoldKey
    optimizer: str
    search: Search
    trial: Trial


def current_best(searches: list[Search]) -> list[Choice]:
    """One Choice per (fold, optimizer) with a finished trial in a FINISHED search."""
    groups: dict[tuple[FoldKey, str], list[Search]] = {}
    for search in searches:
        key = fold_key(search)
        if key is None or search.status != "FINISHED":
            continue
        for optimizer in sorted({t.optimizer for t in search.trials}):
            groups.setdefault((key, optimizer), []).append(search)
    chosen = []
    for (key, optimizer), group in groups.items():
        max_epochs = max((s.max_epochs for s in group if s.max_epochs), default=None)
        trials = [t for s in group for t in s.trials if t.optimizer == optimizer]
        best = best_final_trial(trials, max_epochs)
        if best is not None:
            chosen.append(Choice(key, optimizer, next(s for s in group if best in s.trials), best))
    return sorted(chosen, key=lambda c: (c.key.split, c.key.test_fold, c.optimizer))


def reruns_of(choice: Choice) -> list[Rerun]:
    return [r for r in choice.search.reruns if r.status == "FINISHED" and r.source_trial == choice.trial.trial_id
            and r.optimizer == choice.optimizer]


@dataclass
class Evidence:
    reruns: list[tuple[FoldKey, Rerun]]  # finished reruns of the current best, of one split
    choices: list[Choice]  # the current best per (fold, optimizer) of that split
    notes: list[str] = field(default_factory=list)  # what was left out, and why

    @property
    def joint(self) -> list[Search]:
        """Joint studies whose configurations the evidence uses."""
        seen = {id(c.search): c.search for c in self.choices if reruns_of(c) and is_joint(c.search)}
        return list(seen.values())


def _ignored(searches: list[Search], kept: list[Rerun]) -> list[str]:
    kept_ids = {r.run_id for r in kept}
    finished = [(s, r) for s in searches for r in s.reruns if r.status == "FINISHED" and r.run_id not in kept_ids]
    stale = sum(s.status == "FINISHED" and fold_key(s) is not None for s, _ in finished)
    notes = []
    if stale:
        notes.append(f"{stale} rerun(s) of a configuration that is no longer the current best (or of another split) "
                     "left out")
    if len(finished) > stale:
        notes.append(f"{len(finished) - stale} rerun(s) under searches that did not finish or kept no test fold left out")
    return notes


def evidence(searches: list[Search]) -> Evidence:
    choices = current_best(searches)
    by_split: dict[tuple, list[Choice]] = {}
    for choice in choices:
        if reruns_of(choice):
            by_split.setdefault(choice.key.split, []).append(choice)
    if not by_split:
        return Evidence([], choices, _ignored(searches, []))
    # Most test folds covered, then most reruns: the split closest to every query tested once.
    split = max(by_split, key=lambda k: (len({c.key.test_fold for c in by_split[k]}),
                                         sum(len(reruns_of(c)) for c in by_split[k])))
    used = [c for c in choices if c.key.split == split]
    reruns = [(c.key, r) for c in used for r in reruns_of(c)]
    notes = _ignored(searches, [r for _, r in reruns])
    if len(by_split) > 1:
        notes.append(f"reruns of {len(by_split) - 1} other cross-validation split(s) left out: their test folds "
                     "overlap this one's queries")
    return Evidence(reruns, used, notes)
