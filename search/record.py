"""The search record: what `--resume` needs to finish an experiment's last search after a crash.

One JSON file per experiment, `<storage>/searches/<experiment>.json`: the flags the search was
started with, its stamp (part of every Tune run name, so a new search never reuses an old one's
Tune state), and per study its Tune run name, MLflow parent run and status. Written atomically.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from trainables.errors import UsageError


def path(storage: Path, experiment: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return Path(storage) / "searches" / f"{safe}.json"


def new(experiment: str, argv: list[str]) -> dict:
    argv = [a for a in argv if a != "--resume"]
    return {"experiment": experiment, "argv": argv, "stamp": time.strftime("%Y%m%d-%H%M%S"),
            "status": "RUNNING", "studies": {}}


def load(storage: Path, experiment: str) -> dict | None:
    file = path(storage, experiment)
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text())
    except ValueError as err:
        raise UsageError(f"{file}: corrupt search record ({err}); delete it to start over") from None
    missing = [key for key in ("argv", "stamp", "status", "studies") if key not in record]
    if missing:
        raise UsageError(f"{file}: search record lacks {', '.join(missing)}; delete it to start over")
    return record


def save(storage: Path, record: dict) -> None:
    file = path(storage, record["experiment"])
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(file)
