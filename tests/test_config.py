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
                                       ("dev_fraction", 0.0), ("eval_every", 0)])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(UsageError, match=repr(key)):
        TrainConfig.from_dict({**BASE, key: value})
