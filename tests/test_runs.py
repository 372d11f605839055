"""analysis.runs on a hand-built MLflow store: what a trial's logged history means."""
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
