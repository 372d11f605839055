"""Where a search's Optuna studies live: an RDB storage (SQLite under --storage by default, any
SQLAlchemy URL with --optuna-storage), one study per Tune study name, so `optuna-dashboard` shows
every search and `--extend` continues a finished study with TPE's history.

    optuna-dashboard sqlite:///runs/optuna.db --host 127.0.0.1
"""
from __future__ import annotations

from pathlib import Path

from trainables.errors import UsageError
from trainables.paths import SQLITE_HEADER, check_output

DEFAULT_FILE = "optuna.db"


def url(optuna_storage: str | None, storage: Path) -> str:
    """--optuna-storage, else a SQLite file in --storage."""
    return optuna_storage or f"sqlite:///{(Path(storage) / DEFAULT_FILE).resolve()}"


def check(text: str) -> None:
    """A URL that SQLAlchemy cannot parse, whose dialect or driver is missing, or a SQLite path that
    is no database, fails here: before Ray starts, connecting to nothing, creating no file."""
    import sqlalchemy
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    try:
        parsed = make_url(text)
        sqlalchemy.create_engine(parsed).dispose()  # loads dialect and driver; connects lazily, so never here
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as err:
        raise UsageError(f"--optuna-storage {text!r}: not a usable SQLAlchemy URL ({err})") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        check_output(path, "--optuna-storage")
        if path.is_file() and header(path) != SQLITE_HEADER:
            raise UsageError(f"--optuna-storage {text!r}: {path} is not an SQLite database")


def header(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(len(SQLITE_HEADER))


def open_storage(text: str):
    """The RDBStorage (pickles without its engine, so Tune can save the searcher for --resume)."""
    from optuna.storages import RDBStorage
    # SQLite locks the whole file: wait for a dashboard reading it rather than fail the search.
    kwargs = {"connect_args": {"timeout": 60}} if text.startswith("sqlite") else {}
    return RDBStorage(text, engine_kwargs=kwargs)


def sampler(searcher: str, seed: int, trials: int, concurrency: int):
    """TPE (or the random baseline). With trials running at once, TPE gives the running ones a
    pessimistic score (constant liar), so concurrent proposals do not crowd one region."""
    from optuna.samplers import RandomSampler, TPESampler
    if searcher == "random":
        return RandomSampler(seed=seed)
    return TPESampler(seed=seed, n_startup_trials=min(10, max(2, trials // 2)), constant_liar=concurrency > 1)
