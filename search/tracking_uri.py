"""The MLflow tracking URI a search uses, checked before Ray starts; apart from search/tracking.py so
that a dry run imports neither MLflow nor Ray Tune for it."""
from __future__ import annotations

from pathlib import Path

from trainables.errors import UsageError
from trainables.paths import check_sqlite


def default_uri(storage: Path) -> str:
    return f"sqlite:///{(storage / 'mlflow.db').resolve()}"


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast, before Ray starts, on a tracking URI that cannot work: an HTTP server that does
    not answer (MLflow's own client would retry for minutes) or a SQLite file in a missing folder."""
    if uri.startswith(("http://", "https://")):
        import requests
        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()
        except requests.RequestException as err:
            raise UsageError(f"MLflow tracking URI {uri!r} is unreachable ({type(err).__name__}); "
                             f"start the server (cluster/mlflow_server.sh) or fix --mlflow-uri") from None
    elif uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):].split("?")[0])
        if not path.parent.is_dir():
            raise UsageError(f"MLflow tracking URI {uri!r}: folder {path.parent} does not exist")
        check_sqlite(path, uri)
