import optuna
import pytest

import spaces
from search.run import EMBEDDED_SETTINGS
from spaces.base import LION_BETA2, optuna_params, train_config
from spaces.presets import PRESETS
from trainables.config import OPTIMIZERS, SCHEDULE_FREE, SCHEDULERS, TrainConfig
from trainables.errors import UsageError


@pytest.mark.parametrize("name", ["minilm", "gte", "modernbert"])
def test_every_space_samples_valid_train_configs(name):
    space = spaces.get_space(name)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5), direction="maximize")
    seen = set()
    for i in range(60):
        trial = study.ask()
        space.suggest(trial, optimizers=OPTIMIZERS)
        config = train_config(trial.params)
        cfg = TrainConfig.from_dict({**space.fixed, **EMBEDDED_SETTINGS, **config, "model": "m", "data_dir": "d"})
        low, high = space.lr[cfg.optimizer]
        assert low <= cfg.lr <= high
        low, high = space.weight_decay[cfg.optimizer]
        assert low <= cfg.weight_decay <= high
        assert (cfg.beta2 in LION_BETA2) if cfg.optimizer == "lion" else cfg.beta2 is None
        if cfg.optimizer == "muon":  # its AdamW part samples AdamW's regime
            assert space.lr["adamw"][0] <= cfg.aux_lr <= space.lr["adamw"][1]
        if cfg.optimizer in SCHEDULE_FREE:  # constant, and not even sampled
            assert cfg.scheduler == "constant" and "scheduler" not in trial.params
        if cfg.scheduler == "wsd":
            assert 0.1 <= cfg.wsd_decay_ratio <= 0.3
        seen.add((cfg.optimizer, cfg.scheduler))
        study.tell(trial, float(i % 7))
    assert {opt for opt, _ in seen} == set(OPTIMIZERS)
    assert {sch for _, sch in seen} == set(SCHEDULERS)


@pytest.mark.parametrize("name", ["minilm", "gte", "modernbert"])
def test_lion_regime_is_lower_lr_higher_decay(name):
    space = spaces.get_space(name)
    lr_ratio = space.lr["adamw"][1] / space.lr["lion"][1]
    wd_ratio = space.weight_decay["lion"][1] / space.weight_decay["adamw"][1]
    assert 3 <= lr_ratio <= 10 and 3 <= wd_ratio <= 10


def test_each_optimizer_samples_under_its_own_optuna_names():
    """TPE fits one density per parameter name over the trials that have it: with per-optimizer
    names, Lion's lr density is fitted on Lion trials only, never on AdamW's regime."""
    space = spaces.get_space("minilm")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4), direction="maximize")
    for _ in range(24):
        trial = study.ask()
        space.suggest(trial)
        config = train_config(trial.params)
        study.tell(trial, -abs(config["lr"] - 3e-6) if config["optimizer"] == "lion" else -abs(config["lr"] - 3e-5))
    trials = study.trials
    assert {t.params["optimizer"] for t in trials} == {"adamw", "lion"}
    for name in ("lr", "weight_decay"):
        assert not any(name in t.params for t in trials)  # no shared name left for TPE to pool
        for optimizer in ("adamw", "lion"):
            having = [t for t in trials if f"{optimizer}_{name}" in t.params]
            assert having and all(t.params["optimizer"] == optimizer for t in having)
            low, high = getattr(space, name)[optimizer]
            assert all(low <= t.params[f"{optimizer}_{name}"] <= high for t in having)
    lion = [t for t in trials if t.params["optimizer"] == "lion"]
    assert set(lion[0].distributions) >= {"optimizer", "lion_lr", "lion_weight_decay", "lion_beta2"}


def test_train_config_and_optuna_params_invert_each_other():
    params = {"optimizer": "muon", "muon_lr": 1e-4, "muon_weight_decay": 0.01, "muon_aux_lr": 2e-5,
              "scheduler": "wsd", "warmup_ratio": 0.1, "wsd_decay_ratio": 0.2}
    config = train_config(params)
    assert config == {"optimizer": "muon", "lr": 1e-4, "weight_decay": 0.01, "aux_lr": 2e-5, "scheduler": "wsd",
                      "warmup_ratio": 0.1, "wsd_decay_ratio": 0.2}
    assert optuna_params(config) == params
    free = train_config({"optimizer": "adamw_schedulefree", "adamw_schedulefree_lr": 1e-4, "warmup_ratio": 0.0})
    assert free == {"optimizer": "adamw_schedulefree", "lr": 1e-4, "scheduler": "constant", "warmup_ratio": 0.0}
    assert "scheduler" not in optuna_params(free)


@pytest.mark.parametrize("name", ["minilm", "modernbert"])
def test_a_presets_references_come_back_as_they_were_enqueued(name):
    space = spaces.get_space(name)
    study = optuna.create_study(direction="maximize")
    for reference in PRESETS["paper"].reference[name]:
        study.enqueue_trial(optuna_params(reference))
        trial = study.ask()
        space.suggest(trial)
        assert train_config(trial.params) == reference
        study.tell(trial, 0.0)


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
        seen.add(TrainConfig.from_dict({**train_config(trial.params), "model": "m", "data_dir": "d"}).loss)
    assert seen == {"pointwise", "listwise"}
