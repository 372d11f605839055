"""The driver's queued MLflow writes (search/tracking_queue.py) against real stores: a SQLite store,
one locked by another connection, a port nobody serves, and a real `mlflow server` killed in the
middle of a search."""
import glob
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search import tracking_queue
from search.ray_session import free_port
from search.tracking import PARENT_TAG, TrialRuns
from search.tracking_import import main as import_backlog
from tests.mlflow_store import Store, wait_healthy


class trial:
    """What TrialRuns reads of Tune's Trial: its id, config and name."""

    def __init__(self, trial_id: str):
        self.trial_id, self.config = trial_id, {"optimizer": "adamw", "lr": 1e-5}

    def __str__(self):
        return self.trial_id


def run_trial(callback: TrialRuns, t, epochs=(1, 2, 3)) -> None:
    callback.on_trial_start(0, [], t)
    for epoch in epochs:
        callback.on_trial_result(0, [], t, {"epoch": epoch, "ndcg_at_10": 0.1 * epoch, "train_loss": 1.0 / epoch,
                                            "checkpoint_path": f"/ckpt/{epoch}", "gpu": "none: no GPU"})
    callback.on_trial_complete(0, [], t)


def trial_runs(client: MlflowClient, store: Store, parent: str) -> list:
    return client.search_runs([store.experiment_id], f"tags.`{PARENT_TAG}` = '{parent}'")


def check_finished(client, runs, epochs=(1, 2, 3)) -> None:
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.params["lr"] == "1e-05"
        history = client.get_metric_history(run.info.run_id, "ndcg_at_10")
        assert [m.step for m in history] == list(epochs)
        assert run.data.tags["checkpoint_path"] == f"/ckpt/{epochs[-1]}"  # the last record wins: in order
        assert run.data.tags["best_epoch"] == str(epochs[-1])


def test_records_reach_the_store_in_order_and_the_callback_pickles(tmp_path):
    store = Store(tmp_path)
    parent = store.client.create_run(store.experiment_id).info.run_id
    callback = TrialRuns(store.uri, store.experiment_id, parent, fixed_params={"epochs": 3})
    run_trial(callback, trial("t1"))
    # Tune pickles the callback with the Tuner while its queue's thread runs; a restored one (a
    # resumed search) finds the trial's run by its tags instead of making a second one.
    restored = pickle.loads(pickle.dumps(callback))
    restored.on_trial_start(0, [], trial("t1"))
    restored.on_trial_result(0, [], trial("t1"), {"epoch": 4, "ndcg_at_10": 0.5, "checkpoint_path": "/ckpt/4"})
    restored.on_trial_complete(0, [], trial("t1"))
    assert tracking_queue.finish(tmp_path, timeout=30) == []
    (run,) = trial_runs(store.client, store, parent)
    check_finished(store.client, [run], epochs=(1, 2, 3, 4))
    assert run.data.params["epochs"] == "3" and run.data.tags["trial_id"] == "t1"


def test_a_refused_record_is_dropped_and_the_rest_still_written(tmp_path, capfd):
    store = Store(tmp_path)
    parent = store.client.create_run(store.experiment_id).info.run_id
    store.client.log_param(parent, "lr", "1")
    queue = tracking_queue.for_uri(store.uri)
    queue.put({"op": "log", "key": parent, "params": {"lr": "2"}})  # a param cannot change: refused
    queue.put({"op": "log", "key": "trial:x:y", "tags": {"a": "b"}})  # a run never made
    queue.put({"op": "log", "key": parent, "tags": {"after": "yes"}})
    assert tracking_queue.finish(tmp_path, timeout=30) == []
    assert store.client.get_run(parent).data.tags["after"] == "yes"
    assert capfd.readouterr().err.count("refused a record") == 2


def test_a_locked_store_is_retried_in_order_until_it_answers(tmp_path, capfd):
    store = Store(tmp_path)
    parent = store.client.create_run(store.experiment_id).info.run_id
    callback = TrialRuns(store.uri, store.experiment_id, parent, fixed_params={})
    lock = sqlite3.connect(tmp_path / "mlflow.db", timeout=0)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database: every write fails for now
    started = time.monotonic()
    for name in ("t1", "t2"):
        run_trial(callback, trial(name))
    assert time.monotonic() - started < 1.0  # the callbacks only queued
    deadline = time.monotonic() + 60
    while not callback.queue.behind:
        assert time.monotonic() < deadline, "the queue never saw the failure"
        time.sleep(0.2)
    assert callback.queue.pending() == 10  # 2 × (open, 3 results, terminate), none lost or sent
    lock.rollback()
    lock.close()
    assert callback.queue.drain(60)
    runs = trial_runs(store.client, store, parent)
    assert sorted(r.data.tags["trial_id"] for r in runs) == ["t1", "t2"]
    check_finished(store.client, runs)
    tracking_queue.finish(tmp_path)
    err = capfd.readouterr().err
    assert err.count("cannot be written") == 1 and err.count("is back;") == 1  # one line, not one per record


def test_records_a_down_server_missed_go_to_a_backlog_that_imports(tmp_path, capfd):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = Store(tmp_path)
    parent = store.client.create_run(store.experiment_id).info.run_id  # the search's parent, made at its start
    callback = TrialRuns(down, store.experiment_id, parent, fixed_params={"epochs": 3})
    run_trial(callback, trial("t1"))
    queue = callback.queue
    queue.put({"op": "terminate", "key": parent, "status": "FINISHED"})
    (backlog,) = tracking_queue.finish(tmp_path / "runs", timeout=2)
    assert backlog.parent == tmp_path / "runs" / "tracking-backlog"
    err = capfd.readouterr().err
    assert f"search.tracking_import {backlog}" in err and "6 records saved" in err
    lines = [json.loads(line) for line in backlog.read_text().splitlines()]
    assert lines[0] == {"mlflow_uri": down} and [r["op"] for r in lines[1:]] == [
        "open", "log", "log", "log", "terminate", "terminate"]

    for _ in range(2):  # a second import (after one that stopped half-way, say) changes nothing
        assert import_backlog([str(backlog), "--mlflow-uri", store.uri]) == 0
    (run,) = trial_runs(store.client, store, parent)
    check_finished(store.client, [run])
    assert store.client.get_run(parent).info.status == "FINISHED"

    with pytest.raises(SystemExit) as failed:  # the server still down: an error line, exit 2
        import_backlog([str(backlog)])
    assert failed.value.code == 2 and "run this again" in capfd.readouterr().err


class Server:
    """A real `mlflow server` (SQLite in tmp, one worker) that can be killed and started again."""

    def __init__(self, tmp: Path):
        self.tmp, self.port, self.proc = tmp, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{self.tmp}/server.db", "--artifacts-destination",
             str(self.tmp / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=open(self.tmp / "server.log", "a"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_healthy(self.proc, self.uri, self.tmp / "server.log", 120)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its uvicorn worker share the group
            self.proc.wait(timeout=30)


def tune_epochs(storage: Path) -> dict[str, list[int]]:
    """The epochs each trial reported, as Tune itself recorded them (whatever MLflow's state)."""
    epochs = {}
    for path in glob.glob(str(storage / "tune" / "*" / "*" / "result.json")):
        for line in Path(path).read_text().splitlines():
            result = json.loads(line)
            epochs.setdefault(result["trial_id"], []).append(result["epoch"])
    return epochs


def test_a_search_trains_on_while_its_server_is_down(tmp_path):
    server, storage, log = Server(tmp_path), tmp_path / "runs", tmp_path / "search.log"
    server.start()
    search = subprocess.Popen(
        [sys.executable, "-m", "search.run", "--space", "minilm", "--smoke-test", "--trials", "2", "--epochs", "2",
         "--storage", str(storage), "--mlflow-uri", server.uri, "--experiment", "outage"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    client = MlflowClient(server.uri)

    def wait_for(condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not condition():
            assert search.poll() is None, f"search exited early ({search.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{what}: timed out\n{log.read_text()[-3000:]}"
            time.sleep(0.5)

    def trial_running():
        found = client.get_experiment_by_name("outage")
        return found and client.search_runs([found.experiment_id], "tags.role = 'trial' and attributes.status = 'RUNNING'")
    try:
        wait_for(trial_running, 150, "a RUNNING trial run")
        server.kill()
        reported = sum(map(len, tune_epochs(storage).values()))
        wait_for(lambda: sum(map(len, tune_epochs(storage).values())) > reported, 150, "a result while it is down")
        wait_for(lambda: "cannot be written" in log.read_text(), 60, "the search saying tracking is behind")
        server.start()  # same port, same database
        assert search.wait(timeout=180) == 0, log.read_text()[-3000:]
        experiment = client.get_experiment_by_name("outage")
        runs = client.search_runs([experiment.experiment_id])
        trials = [r for r in runs if r.data.tags.get("role") == "trial"]
        assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in runs)
        epochs = tune_epochs(storage)  # ASHA may have stopped one trial after its first epoch
        assert sorted(epochs) == sorted(r.data.tags["trial_id"] for r in trials) and [1, 2] in epochs.values()
        for run in trials:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "ndcg_at_10")]
            assert steps == epochs[run.data.tags["trial_id"]], steps
        assert not (storage / "tracking-backlog").exists()
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
            search.wait()
        server.kill()
