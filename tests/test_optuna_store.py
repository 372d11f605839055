"""The Optuna storage a search keeps its studies in: its URL, the checks made before Ray, the sampler."""
import pickle

import optuna
import pytest

from search import optuna_store
from trainables.errors import UsageError


def test_default_is_a_sqlite_file_in_storage(tmp_path):
    assert optuna_store.url(None, tmp_path) == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"
    assert optuna_store.url("sqlite:////elsewhere/o.db", tmp_path) == "sqlite:////elsewhere/o.db"


@pytest.mark.parametrize("url, needle", [("not a url", "not a usable SQLAlchemy URL"),
                                         ("nosuchdb://host/db", "not a usable SQLAlchemy URL"),
                                         ("postgresql+nodriver://h/db", "not a usable SQLAlchemy URL")])
def test_unusable_urls_fail_before_anything_connects(url, needle):
    with pytest.raises(UsageError, match=needle):
        optuna_store.check(url)


def test_a_sqlite_path_that_is_no_database_or_below_a_file_fails(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, not SQLite")
    with pytest.raises(UsageError, match="not an SQLite database"):
        optuna_store.check(f"sqlite:///{tmp_path / 'notes.txt'}")
    with pytest.raises(UsageError, match="is a file"):
        optuna_store.check(f"sqlite:///{tmp_path / 'notes.txt' / 'o.db'}")
    optuna_store.check(f"sqlite:///{tmp_path / 'new' / 'o.db'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # the check created nothing


def test_storage_pickles_and_keeps_studies(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(storage=optuna_store.open_storage(url), study_name="s", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    restored = pickle.loads(pickle.dumps(study))  # as Tune saves the searcher for --resume
    restored.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 3


def test_constant_liar_only_with_trials_at_once():
    assert optuna_store.sampler("tpe", 0, 20, concurrency=4)._constant_liar
    assert not optuna_store.sampler("tpe", 0, 20, concurrency=1)._constant_liar
    assert isinstance(optuna_store.sampler("random", 0, 20, concurrency=4), optuna.samplers.RandomSampler)
