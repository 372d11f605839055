"""analysis.runs on a hand-built MLflow store: what a trial's logged history means."""
from mlflow.entities import Metric

from analysis.summary import backbones, best_final_trial
from tests.mlflow_store import Store


def test_a_resumed_trial_that_reached_the_last_epoch_is_not_early_stopped(tmp_path):
    store = Store(tmp_path)
    parent = store.search("adamw", epochs=3)
    # Resumed after epoch 3 was saved: epoch 2's result never reached MLflow, epoch 3 came twice.
    store.trial(parent, "resumed", "adamw", [0.50, 0.70, 0.71], epochs=[1, 3, 3])
    store.trial(parent, "stopped", "adamw", [0.60, 0.75])  # ASHA stopped it after epoch 2
    backbone = next(iter(backbones(store.load())))
    trials = {t.trial_id: t for t in backbone.trials}
    assert trials["resumed"].epochs == 3 and trials["resumed"].final("ndcg_at_10") == 0.71  # the later report
    assert trials["stopped"].epochs == 2
    assert best_final_trial(backbone.trials, 3).trial_id == "resumed"  # complete trials rank first


def stepwise_trial(store, parent, trial_id: str, ndcg: list[float]) -> None:
    """As search.run --eval-every 4 logs it at 12 steps per epoch: MLflow steps are optimiser steps,
    with the fractional `epoch` beside."""
    steps = range(4, 4 * len(ndcg) + 1, 4)
    metrics = [Metric("ndcg_at_10", v, 1000 + s, s) for s, v in zip(steps, ndcg)]
    metrics += [Metric("epoch", s / 12, 1000 + s, s) for s in steps]
    store._run({"mlflow.parentRunId": parent, "role": "trial", "trial_id": trial_id},
               {"optimizer": "adamw", "lr": 1e-5, "split_seed": 0, "eval_every": 4}, metrics)


def test_a_trial_with_eval_every_is_read_by_epoch_not_by_optimiser_step(tmp_path):
    store = Store(tmp_path)
    parent = store.search("adamw", epochs=2)
    stepwise_trial(store, parent, "complete", [0.3, 0.4, 0.5, 0.55, 0.6, 0.62])
    stepwise_trial(store, parent, "stopped", [0.5, 0.6, 0.7, 0.8])  # ASHA stopped it at step 16
    backbone = next(iter(backbones(store.load())))
    trials = {t.trial_id: t for t in backbone.trials}
    assert trials["complete"].epochs == 2 and trials["complete"].history["ndcg_at_10"][0] == (1 / 3, 0.3)
    assert trials["stopped"].epochs == 16 / 12 and trials["complete"].best_epoch() == (2, 0.62)
    assert best_final_trial(backbone.trials, 2).trial_id == "complete"  # complete trials rank first
