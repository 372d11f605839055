"""search.searcher with real Ray Tune, ASHA and Optuna: where the first rung sits, and what TPE is told."""
import pytest
from optuna.trial import TrialState

from search.searcher import PrunedAwareOptunaSearch, early_stopping, grace_period


@pytest.mark.parametrize("max_t, grace", [(1, 1), (2, 1), (3, 2), (4, 2), (1000, 500)])
def test_the_first_rung_is_at_half_the_budget_or_later(max_t, grace):
    assert grace_period(max_t) == grace


def test_asha_stopped_trials_reach_optuna_as_pruned(ray_local, tmp_path):
    import optuna
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    def constant_score(config):  # defined here, so Ray ships it by value to its workers
        for epoch in range(1, 5):
            tune.report({"epoch": epoch, "ndcg_at_10": config["x"]})

    # One trial at a time, in this order. ASHA's one rung is at epoch 2 (grace_period(4)); a trial
    # goes on when its score reaches the median of those already recorded there.
    points = [{"x": 0.9}, {"x": 0.1}, {"x": 0.3}, {"x": 0.8}]
    searcher = PrunedAwareOptunaSearch(space={"x": optuna.distributions.FloatDistribution(0, 1)},
                                       metric="ndcg_at_10", mode="max", points_to_evaluate=points,
                                       time_attr="epoch", max_t=4)
    tuner = tune.Tuner(constant_score, tune_config=tune.TuneConfig(
        num_samples=len(points), search_alg=ConcurrencyLimiter(searcher, max_concurrent=1),
        scheduler=early_stopping("ndcg_at_10", "max", "epoch", 4)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    results = tuner.fit()
    reached = {r.config["x"]: r.metrics["epoch"] for r in results}
    assert reached == {0.9: 4, 0.1: 2, 0.3: 2, 0.8: 4}
    told = {t.params["x"]: t.state for t in searcher._ot_study.trials}
    assert told == {0.9: TrialState.COMPLETE, 0.1: TrialState.PRUNED, 0.3: TrialState.PRUNED, 0.8: TrialState.COMPLETE}
    complete = searcher._ot_study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.value for t in complete) == [0.8, 0.9]  # TPE's finished scores hold no cut-short one


def test_with_eval_every_asha_counts_optimiser_steps_from_half_the_steps(ray_local, tmp_path):
    import optuna
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from search.study import budget
    assert budget({"epochs": 2}, None) == ("epoch", 2)  # without eval_every: as before
    time_attr, max_t = budget({"epochs": 2, "eval_every": 5}, total_steps=24)  # 12 steps per epoch
    assert (time_attr, max_t) == ("step", 24)
    scheduler = early_stopping("ndcg_at_10", "max", time_attr, max_t)
    assert grace_period(max_t) == 12  # ⌈24 / 2⌉ steps: the one rung sits at step 12

    def stepwise_score(config):  # reports as the loop does with eval_every 5: steps 5, 10, 12, 15, 20, 24
        for step in (5, 10, 12, 15, 20, 24):
            tune.report({"step": step, "epoch": step / 12, "ndcg_at_10": config["x"]})

    points = [{"x": 0.9}, {"x": 0.1}, {"x": 0.3}, {"x": 0.8}]
    searcher = PrunedAwareOptunaSearch(space={"x": optuna.distributions.FloatDistribution(0, 1)},
                                       metric="ndcg_at_10", mode="max", points_to_evaluate=points,
                                       time_attr=time_attr, max_t=max_t)
    results = tune.Tuner(stepwise_score, tune_config=tune.TuneConfig(
        num_samples=len(points), search_alg=ConcurrencyLimiter(searcher, max_concurrent=1), scheduler=scheduler),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert {r.config["x"]: r.metrics["step"] for r in results} == {0.9: 24, 0.1: 12, 0.3: 12, 0.8: 24}
    told = {t.params["x"]: t.state for t in searcher._ot_study.trials}
    assert told == {0.9: TrialState.COMPLETE, 0.1: TrialState.PRUNED, 0.3: TrialState.PRUNED, 0.8: TrialState.COMPLETE}


def test_trials_asked_for_but_never_saved_are_failed_on_restore(tmp_path):
    import optuna

    from search.searcher import fail_orphans
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s", direction="maximize")
    kept, orphan = study.ask(), study.ask()  # the driver died after the second ask, before Tune saved it
    assert fail_orphans(study, [kept]) == 1
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.FAIL] and orphan.number == 1
    assert fail_orphans(study, [kept]) == 0


def test_trials_get_train_config_keys_while_optuna_keeps_per_optimizer_names():
    import functools

    import spaces
    from spaces.base import optuna_params, train_config
    from spaces.presets import PRESETS
    from trainables.config import TrainConfig
    space = spaces.get_space("minilm")
    references = PRESETS["paper"].reference["minilm"]
    searcher = PrunedAwareOptunaSearch(space=functools.partial(space.suggest, optimizers=("adamw", "lion")),
                                       metric="ndcg_at_10", mode="max", time_attr="epoch", max_t=2,
                                       points_to_evaluate=[optuna_params(c) for c in references],
                                       to_config=train_config)
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert configs[:2] == references  # a preset's references arrive as they were written
    for config, trial in zip(configs, searcher._ot_study.trials):
        TrainConfig.from_dict({**config, "model": "m", "data_dir": "d"})  # every key a TrainConfig key
        assert f"{config['optimizer']}_lr" in trial.params and "lr" not in trial.params
