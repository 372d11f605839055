"""The driver's MLflow writes, queued and sent by one background thread, so that a tracking server
that is down never blocks Tune's callbacks (which would keep every trial from starting or reporting).

Records are plain dicts, sent in the order they were queued (so per run: open → params → metrics →
terminate). A trial's run is named by a local key until the thread has created or found it. Records
still queued when the search ends and the server stays down go to a JSON-lines backlog, which
`python -m search.tracking_import` writes later. Every record can be sent twice without harm.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path

# The thread retries itself, in order; MLflow's HTTP client alone would hold one record for ~4 minutes.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
# Loggers that would repeat, with a traceback, every failed try that the queue reports once.
NOISY_LOGGERS = ("mlflow.store.db.utils", "urllib3.connectionpool")
THREAD = "mlflow-queue"
DRAIN_S = 60.0  # how long the end of a search waits for a server that is down
BACKOFF_S = (0.5, 10.0)
IMPORT = "python -m search.tracking_import"


class Rejected(Exception):
    """A record the store refuses (or whose run was never made): sending it again would not help."""


def transient(err: Exception) -> bool:
    """Worth retrying: the server unreachable or failing (5xx, 429), or the network."""
    from mlflow.exceptions import MlflowException
    if isinstance(err, MlflowException):
        return err.get_http_status_code() >= 500 or err.get_http_status_code() == 429
    return isinstance(err, OSError) and not isinstance(err, FileNotFoundError)


def open_run(client, record: dict, run_ids: dict) -> None:
    """Find the run by its tags (a resumed trial's) or create it with its params."""
    run_id = record.get("run_id")
    if run_id is None:
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in record["match"].items())
        found = client.search_runs([record["experiment_id"]], query, max_results=1)
        if found:
            run_ids[record["key"]] = found[0].info.run_id
            client.update_run(found[0].info.run_id, status="RUNNING")
            return
        run = client.create_run(record["experiment_id"], run_name=record["run_name"], tags=record["tags"])
        run_id = record["run_id"] = run.info.run_id  # a retry of this record logs the params only
    run_ids[record["key"]] = run_id
    log_batch(client, run_id, {"params": record["params"]})


def log_batch(client, run_id: str, record: dict) -> None:
    from mlflow.entities import Metric, Param, RunTag
    client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in record.get("metrics", ())],
                     params=[Param(k, v) for k, v in record.get("params", {}).items()],
                     tags=[RunTag(k, v) for k, v in record.get("tags", {}).items()])


def apply(client, record: dict, run_ids: dict) -> None:
    """Send one record; `run_ids` maps trial keys to the runs made for them."""
    if record["op"] == "open":
        return open_run(client, record, run_ids)
    run_id = run_ids.get(record["key"], record["key"])
    if run_id.startswith("trial:"):
        raise Rejected(f"no run was made for {run_id}")
    if record["op"] == "log":
        log_batch(client, run_id, record)
    elif record["op"] == "terminate":
        client.set_terminated(run_id, record["status"])
    elif record["op"] == "close_children":
        from search.tracking import close_children  # tracking imports this module
        close_children(client, record["experiment_id"], run_id, record["status"])
    elif record["op"] == "artifacts":
        if not Path(record["path"]).is_dir():
            raise Rejected(f"{record['path']} is gone")
        client.log_artifacts(run_id, record["path"], record["artifact_path"])
    else:
        raise Rejected(f"unknown record {record['op']!r}")


def brief(err: Exception) -> str:
    text = " ".join(str(err).split())
    cause = re.search(r"\[Errno -?\d+\] [^'\")]+", text)  # the socket's own words, deep in urllib3's message
    return cause.group(0) if cause else f"{type(err).__name__}: {text}"[:200]


def not_from_queue(record: logging.LogRecord) -> bool:
    return record.threadName != THREAD


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class TrackingQueue:
    """Records for one tracking URI, sent in order by a daemon thread started on the first put."""

    def __init__(self, uri: str):
        self.uri = uri
        self.records: collections.deque = collections.deque()
        self.run_ids: dict[str, str] = {}
        self.sending = False  # the oldest record is being sent
        self.behind = self.closed = False
        self.cond = threading.Condition()
        self.thread = None

    def put(self, record: dict) -> None:
        with self.cond:
            if self.closed:
                raise RuntimeError(f"tracking queue for {self.uri} is closed")
            self.records.append(record)
            if self.thread is None:
                self.thread = threading.Thread(target=self._send_all, name=THREAD, daemon=True)
                self.thread.start()
            self.cond.notify_all()

    def pending(self) -> int:
        with self.cond:
            return len(self.records)

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every record to be sent; whether they were."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.records and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            return not self.records

    def close(self, timeout: float, backlog_dir: Path) -> Path | None:
        """Drain, then stop the thread; records left are written to a backlog file, returned."""
        try:
            drained = self.drain(timeout)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, keep the records
            drained = False
        with self.cond:
            self.closed = True
            left = [{**r, "key": self.run_ids.get(r["key"], r["key"])} for r in self.records]
            self.cond.notify_all()
        if drained:
            return None
        backlog_dir.mkdir(parents=True, exist_ok=True)
        path = backlog_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(line) + "\n" for line in [{"mlflow_uri": self.uri}, *left]))
        tmp.replace(path)
        return path

    def _send_all(self) -> None:
        from mlflow.tracking import MlflowClient
        client, delay = MlflowClient(tracking_uri=self.uri), BACKOFF_S[0]
        while True:
            with self.cond:
                while not self.records and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                record = self.records[0]
            try:
                apply(client, record, self.run_ids)
            except Exception as err:  # noqa: BLE001 - whatever the store says, training goes on
                if transient(err):
                    self._wait_out(err, delay)
                    delay = min(2 * delay, BACKOFF_S[1])
                    continue
                say(f"warning: MLflow refused a record ({record['op']} {record['key']}), dropped: {brief(err)}")
            with self.cond:
                if self.behind:
                    say(f"MLflow tracking at {self.uri} is back; writing the {len(self.records)} queued records")
                self.behind, delay = False, BACKOFF_S[0]
                if not self.closed:
                    self.records.popleft()
                self.cond.notify_all()

    def _wait_out(self, err: Exception, delay: float) -> None:
        with self.cond:
            if not self.behind:  # one line per outage, not one per record
                say(f"warning: MLflow tracking at {self.uri} cannot be written ({brief(err)}); "
                    f"trials go on, and their records are queued until it is back")
            self.behind = True
            self.cond.wait(delay)  # close() wakes it


_queues: dict[str, TrackingQueue] = {}
_lock = threading.Lock()


def for_uri(uri: str) -> TrackingQueue:
    """This process's queue for `uri` (created on first use)."""
    with _lock:
        if uri not in _queues:
            for name, value in HTTP_SETTINGS.items():
                os.environ.setdefault(name, value)
            for name in NOISY_LOGGERS:
                logging.getLogger(name).addFilter(not_from_queue)
            _queues[uri] = TrackingQueue(uri)
        return _queues[uri]


def finish(storage: Path, timeout: float = DRAIN_S) -> list[Path]:
    """End of a search: send what is queued, waiting up to `timeout` for a server that is down;
    what is left goes to backlog files under storage, each printed with the command that writes it."""
    with _lock:
        queues = list(_queues.values())
        _queues.clear()
    backlogs = []
    for queue in queues:
        if queue.behind:
            say(f"waiting up to {timeout:.0f} s for MLflow tracking at {queue.uri} ({queue.pending()} records queued)")
        path = queue.close(timeout, storage / "tracking-backlog")
        if path:
            say(f"warning: MLflow tracking at {queue.uri} did not come back: {queue.pending()} records saved to "
                f"{path}; write them with: {IMPORT} {path}")
            backlogs.append(path)
    return backlogs
