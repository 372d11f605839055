"""Kills, for real: a training worker mid-trial (the trial retries from its epoch checkpoint) and the
driver mid-search (`--resume` finishes the same study, Optuna's history intact, no run left RUNNING)."""
import glob
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.tracking import default_uri


def start_search(*args, log: Path) -> subprocess.Popen:
    # Its own session, so the test can kill the driver and everything it started, and nothing else.
    return subprocess.Popen([sys.executable, "-m", "search.run", "--space", "minilm", "--smoke-test", *map(str, args)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, timeout: float, proc: subprocess.Popen, log: Path):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"search exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out:\n{log.read_text()[-3000:]}")


def kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def runs_of(storage: Path, experiment: str):
    client = MlflowClient(default_uri(storage))
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def test_killed_worker_resumes_from_its_checkpoint(tmp_path):
    storage, log = tmp_path / "runs", tmp_path / "search.log"
    proc = start_search("--trials", 1, "--epochs", 4, "--max-failures", 1, "--storage", storage,
                        "--experiment", "worker-kill", log=log)
    try:
        wait_for(lambda: glob.glob(str(storage / "trials" / "*" / "checkpoint_*")), 240, proc, log)

        def training_worker():
            workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                       if "RayTrainWorker" in " ".join(p.cmdline())]
            return workers[0] if workers else None
        worker = wait_for(training_worker, 60, proc, log)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        kill_session(proc)
    (trial,) = [r for r in runs_of(storage, "worker-kill") if r.data.tags.get("role") == "trial"]
    assert trial.info.status == "FINISHED"
    client = MlflowClient(default_uri(storage))
    steps = [m.step for m in client.get_metric_history(trial.info.run_id, "ndcg_at_10")]
    # A restart from scratch would report epoch 1 again; a resume reports each epoch once.
    assert steps == [1, 2, 3, 4], steps


def test_killed_driver_then_resume_completes_the_same_study(tmp_path):
    storage, log = tmp_path / "runs", tmp_path / "search.log"
    out = tmp_path / "out.json"
    proc = start_search("--trials", 3, "--storage", storage, "--experiment", "driver-kill", "--output-json", out,
                        log=log)
    try:
        wait_for(lambda: any(r.info.status == "FINISHED" for r in runs_of(storage, "driver-kill")), 300, proc, log)
    finally:
        kill_session(proc)
    assert any(r.info.status == "RUNNING" for r in runs_of(storage, "driver-kill"))  # the kill left them open
    assert not out.exists()

    resumed = subprocess.run([sys.executable, "-m", "search.run", "--space", "minilm", "--resume", "--storage",
                              str(storage), "--experiment", "driver-kill"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    summary = json.loads(out.read_text())  # --output-json came back from the recorded flags
    assert summary["status"] == "FINISHED" and len(summary["trials"]) == 3
    runs = runs_of(storage, "driver-kill")
    assert all(r.info.status != "RUNNING" for r in runs)
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert len(trials) == 3 and len({r.data.tags["trial_id"] for r in trials}) == 3
    assert len([r for r in runs if r.data.tags.get("role") == "search"]) == 1

    # Optuna's history: the resumed searcher's study holds exactly the three trials Tune ran.
    latest = max(glob.glob(str(storage / "tune" / "*" / "searcher-state-*.pkl")))  # names carry the start time
    with open(latest, "rb") as handle:
        study = pickle.load(handle)["_ot_study"]  # on the search's Optuna storage (runs/optuna.db)
    # Asked for but never run (the driver died before Tune saved it): FAIL, which TPE ignores.
    ran = [t for t in study.trials if t.state != TrialState.FAIL]
    assert len(ran) == 3
    from spaces.base import train_config
    lr = lambda trial: train_config(trial.params)["lr"]  # Optuna's name is per optimizer (`lion_lr`)
    epochs = {row["config"]["lr"]: row["epochs"] for row in summary["trials"]}
    for trial in ran:  # ASHA-stopped trials were told PRUNED, complete ones COMPLETE with their score
        complete = epochs[lr(trial)] == max(epochs.values())
        assert trial.state == (TrialState.COMPLETE if complete else TrialState.PRUNED)
        assert (trial.value is not None) == complete
    assert sorted(lr(t) for t in ran) == sorted(t["config"]["lr"] for t in summary["trials"])
