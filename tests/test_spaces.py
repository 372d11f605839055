import optuna
import pytest

import spaces
from search.run import EMBEDDED_SETTINGS
from trainables.config import TrainConfig
from trainables.errors import UsageError


@pytest.mark.parametrize("name", ["minilm", "gte", "modernbert"])
def test_every_space_samples_valid_train_configs(name):
    space = spaces.get_space(name)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5), direction="maximize")
    seen = set()
    for i in range(30):
        trial = study.ask()
        space.suggest(trial)
        params = trial.params
        cfg = TrainConfig.from_dict({**space.fixed, **EMBEDDED_SETTINGS, **params, "model": "m", "data_dir": "d"})
        low, high = space.lr[cfg.optimizer]
        assert low <= cfg.lr <= high
        low, high = space.weight_decay[cfg.optimizer]
        assert low <= cfg.weight_decay <= high
        seen.add((cfg.optimizer, cfg.scheduler))
        study.tell(trial, float(i % 7))
    assert {opt for opt, _ in seen} == {"adamw", "lion"}
    assert {sch for _, sch in seen} == {"constant", "linear", "cosine"}


@pytest.mark.parametrize("name", ["minilm", "gte", "modernbert"])
def test_lion_regime_is_lower_lr_higher_decay(name):
    space = spaces.get_space(name)
    lr_ratio = space.lr["adamw"][1] / space.lr["lion"][1]
    wd_ratio = space.weight_decay["lion"][1] / space.weight_decay["adamw"][1]
    assert 3 <= lr_ratio <= 10 and 3 <= wd_ratio <= 10


def test_unknown_space_lists_valid_ones():
    with pytest.raises(UsageError, match="gte, minilm, modernbert"):
        spaces.get_space("bert-large")


def test_loss_is_searched_only_when_a_space_offers_several():
    import dataclasses
    space = spaces.get_space("minilm")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space.suggest(trial)
    assert "loss" not in trial.params  # the default: pointwise, not a searched dimension
    both = dataclasses.replace(space, losses=("pointwise", "listwise"))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        both.suggest(trial)
        seen.add(TrainConfig.from_dict({**trial.params, "model": "m", "data_dir": "d"}).loss)
    assert seen == {"pointwise", "listwise"}
