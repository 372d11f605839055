"""Early stopping that judges late enough, and a TPE that knows which scores were cut short.

ASHA compares trials at rungs; a rung early in a schedule still near its peak lr favours whichever
optimizer starts fast, so the first rung sits at half the budget or later. A trial ASHA stops there
is told to Optuna as PRUNED: OptunaSearch would tell it COMPLETE with its last score, and TPE would
learn from a cut-short score as if it were final. Both work in whatever unit the study reports
(time_attr): epochs, or optimiser steps when trials report every eval_every steps. Trials get the
space's params as TrainConfig keys (to_config): Optuna samples them under per-optimizer names.
"""
from __future__ import annotations

import math

from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

REDUCTION_FACTOR = 2


def grace_period(max_t: int) -> int:
    """At least half the budget, rounded up: 3 epochs give a first rung at epoch 2, 1001 steps at step 501."""
    return max(1, math.ceil(max_t / 2))


def early_stopping(metric: str, mode: str, time_attr: str, max_t: int) -> ASHAScheduler:
    return ASHAScheduler(metric=metric, mode=mode, time_attr=time_attr, max_t=max_t,
                         grace_period=grace_period(max_t), reduction_factor=REDUCTION_FACTOR)


class PrunedAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells a trial ending before max_t of time_attr, without an error, as
    PRUNED: only the scheduler ends a trial early, and a pruned trial ranks by its last
    intermediate value among the pruned, never as a finished result."""

    def __init__(self, *args, time_attr: str, max_t: int, to_config=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._time_attr, self._max_t, self._to_config = time_attr, max_t, to_config

    def suggest(self, trial_id: str):
        params = super().suggest(trial_id)
        # getattr: a searcher pickled before to_config existed restores without it
        to_config = getattr(self, "_to_config", None)
        return to_config(params) if to_config and isinstance(params, dict) else params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        reached = (result or {}).get(self._time_attr)
        if error or reached is None or reached >= self._max_t or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result, error)
        from optuna.trial import TrialState
        self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str):
        super().restore(checkpoint_path)
        fail_orphans(self._ot_study, self._ot_trials.values())


def fail_orphans(study, known) -> int:
    """Tell FAIL the Optuna trials a persistent study holds as RUNNING that the restored searcher does
    not know: a driver killed after asking for them but before Tune saved its state. Tune never ran
    them (it asks again); left RUNNING, TPE's constant liar would count them as running for ever."""
    from optuna.trial import TrialState
    numbers = {trial.number for trial in known}
    orphans = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if t.number not in numbers]
    for number in orphans:
        study.tell(number, state=TrialState.FAIL)
    return len(orphans)
