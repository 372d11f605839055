"""Paths a CLI reads or will write, checked at once: a write that fails at the end of a long run
would lose the run."""
from __future__ import annotations

from pathlib import Path

from trainables.errors import UsageError


def require_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: file not found")
    return path


def check_output(path, flag: str, directory: bool = False) -> None:
    """`flag PATH` can be created as a file (or, with directory, a directory): it is not the other
    kind already, and no part of it above is a file."""
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        raise UsageError(f"{flag} {path}: exists and is {'not ' * directory}a directory")
    above = next((p for p in path.resolve().parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UsageError(f"{flag} {path}: {above} is a file, not a directory")


SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite(path, uri: str) -> None:
    """A file at a sqlite:/// URI that MLflow would fail on with a traceback, or (empty) write into."""
    path = Path(path)
    if path.exists() and _header(path) != SQLITE_HEADER:
        raise UsageError(f"MLflow tracking URI {uri!r}: {path} is not an SQLite database")


def _header(path: Path) -> bytes:
    if not path.is_file():
        return b""
    with open(path, "rb") as handle:
        return handle.read(len(SQLITE_HEADER))
