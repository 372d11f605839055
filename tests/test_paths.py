import sqlite3

import pytest

from trainables.errors import UsageError
from trainables.paths import check_output, check_sqlite, require_file


def test_outputs_of_the_wrong_kind_or_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="--out .*: exists and is a directory"):
        check_output(tmp_path, "--out")
    with pytest.raises(UsageError, match="--dir .*: exists and is not a directory"):
        check_output(tmp_path / "file", "--dir", directory=True)
    with pytest.raises(UsageError, match="file is a file, not a directory"):
        check_output(tmp_path / "file" / "deeper" / "o.json", "--out")
    check_output(tmp_path / "new" / "o.json", "--out")  # created later, parents and all
    check_output(tmp_path / "file", "--out")  # replaced later


def test_sqlite_store_must_be_a_database(tmp_path):
    (tmp_path / "text.db").write_text("hello")
    (tmp_path / "empty.db").write_bytes(b"")
    for name in ("text.db", "empty.db"):
        with pytest.raises(UsageError, match=f"{name} is not an SQLite database"):
            check_sqlite(tmp_path / name, f"sqlite:///{tmp_path / name}")
    sqlite3.connect(tmp_path / "real.db").execute("create table t (x)").connection.commit()
    check_sqlite(tmp_path / "real.db", "uri")
    check_sqlite(tmp_path / "new.db", "uri")  # MLflow creates it


def test_require_file(tmp_path):
    with pytest.raises(UsageError, match="none.tsv: file not found"):
        require_file(tmp_path / "none.tsv")
    with pytest.raises(UsageError, match="file not found"):
        require_file(tmp_path)
