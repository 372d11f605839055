import pytest

from trainables.config import TrainConfig
from trainables.errors import UsageError

BASE = {"model": "m", "data_dir": "d"}


def test_builds_from_known_keys():
    cfg = TrainConfig.from_dict({**BASE, "optimizer": "lion", "lr": 1e-6, "scheduler": "cosine"})
    assert cfg.optimizer == "lion" and cfg.lr == 1e-6 and cfg.scheduler == "cosine"


def test_unknown_key_raises_naming_it():
    with pytest.raises(UsageError, match="'learning_rate'"):
        TrainConfig.from_dict({**BASE, "learning_rate": 1e-5})


def test_missing_required_key():
    with pytest.raises(UsageError, match="'data_dir'"):
        TrainConfig.from_dict({"model": "m"})


@pytest.mark.parametrize("key,value", [("optimizer", "sgd"), ("scheduler", "step"), ("lr", 0.0),
                                       ("warmup_ratio", 1.0), ("batch_size", 0), ("beta2", 1.5),
                                       ("dev_fraction", 0.0), ("eval_every", 0), ("wsd_decay_ratio", 0.0),
                                       ("aux_lr", 1e-4)])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(UsageError, match=repr(key)):
        TrainConfig.from_dict({**BASE, key: value})


@pytest.mark.parametrize("key,value,expected", [
    ("max_length", "abc", "an integer"), ("max_length", 1.5, "an integer"), ("max_length", True, "an integer"),
    ("bf16", 1, "true or false"), ("bf16", "yes", "true or false"), ("lr", "fast", "a number"),
    ("lr", False, "a number"), ("attn_implementation", 3, "a string or null"),
    ("max_triples", 2.0, "an integer or null"), ("model", None, "a string")])
def test_wrong_types_name_the_key_and_the_type(key, value, expected):
    with pytest.raises(UsageError, match=f"{key!r}={value!r}: must be {expected}$"):
        TrainConfig.from_dict({**BASE, key: value})


def test_ints_are_numbers_and_none_fills_optional_fields():
    import numpy as np
    cfg = TrainConfig.from_dict({**BASE, "lr": 1, "beta1": None, "max_triples": np.int64(5),
                                 "weight_decay": np.float64(0.1), "attn_implementation": "sdpa"})
    assert (cfg.lr, cfg.beta1, cfg.max_triples, cfg.attn_implementation) == (1, None, 5, "sdpa")


def test_loss_defaults_to_pointwise_and_listwise_refuses_per_pair_settings():
    assert TrainConfig.from_dict(BASE).loss == "pointwise"
    assert TrainConfig.from_dict({**BASE, "loss": "listwise"}).loss == "listwise"
    with pytest.raises(UsageError, match="'loss'='hinge': must be one of pointwise, listwise, margin_mse"):
        TrainConfig.from_dict({**BASE, "loss": "hinge"})
    for key in ("group_by_length", "graded_labels"):
        with pytest.raises(UsageError, match=f"'{key}'=True: .*needs loss='pointwise'"):
            TrainConfig.from_dict({**BASE, "loss": "listwise", key: True})
    with pytest.raises(UsageError, match="'negatives_per_query'=0: must be >= 1 with loss='listwise'"):
        TrainConfig.from_dict({**BASE, "loss": "listwise", "negatives_per_query": 0})


def test_margin_mse_is_refused_until_training_data_carries_teacher_scores():
    with pytest.raises(UsageError, match="'loss'='margin_mse': needs a teacher's score for each training pair"):
        TrainConfig.from_dict({**BASE, "loss": "margin_mse"})


@pytest.mark.parametrize("values,key,why", [
    ({"optimizer": "muon"}, "aux_lr", "muon needs the AdamW lr"),
    ({"optimizer": "muon", "aux_lr": 0.0}, "aux_lr", "must be > 0"),
    ({"optimizer": "adamw_schedulefree", "scheduler": "linear"}, "scheduler", "schedule-free"),
    ({"scheduler": "wsd", "warmup_ratio": 0.5, "wsd_decay_ratio": 0.6}, "wsd_decay_ratio", "<= 1")])
def test_optimizer_and_schedule_combinations(values, key, why):
    with pytest.raises(UsageError, match=f"{key!r}.*{why}"):
        TrainConfig.from_dict({**BASE, **values})


def test_every_optimizer_and_schedule_builds():
    from trainables.config import OPTIMIZERS, SCHEDULE_FREE, SCHEDULERS
    for optimizer in OPTIMIZERS:
        for scheduler in (("constant",) if optimizer in SCHEDULE_FREE else SCHEDULERS):
            TrainConfig.from_dict({**BASE, "optimizer": optimizer, "scheduler": scheduler,
                                   "aux_lr": 1e-5 if optimizer == "muon" else None})
