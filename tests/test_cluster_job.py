"""Ray clusters on 127.0.0.1 (each its own temp dir and ports), smoke searches sent to them with
`ray job submit` and cluster/runtime_env.yaml: on two nodes, one trial's two DDP workers on the two
nodes; on one node with token auth, a search given no --address, which must join the job's cluster.
Only the processes these tests started are stopped: never a bare `ray stop`."""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from search.ray_session import LOCAL_ENV, free_port
from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def cluster_env() -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_V2_ENABLED": "1", "RAY_ADDRESS": ""}


def ray_cli(*args, timeout=180, retry_on=None, env=None):
    """Run the ray CLI; while its output says `retry_on` (a node still starting), try again."""
    deadline = time.time() + timeout
    while True:
        done = subprocess.run([str(BIN / "ray"), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                              env=env or cluster_env(), cwd=ROOT)
        if done.returncode == 0 or not retry_on or retry_on not in done.stderr + done.stdout or time.time() > deadline:
            break
        time.sleep(3)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def stop_cluster(temp_dir: str) -> None:
    """Kill every process whose command line names this cluster's temp dir (raylets, GCS, dashboard,
    workers all carry it), then anything left of their children; then remove the dir."""
    mine = [p for p in psutil.process_iter(["cmdline"]) if temp_dir in " ".join(p.info["cmdline"] or [])]
    family = {p.pid: p for proc in mine for p in [proc, *proc.children(recursive=True)]}
    for proc in family.values():
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(family.values()), timeout=30)
    shutil.rmtree(temp_dir, ignore_errors=True)


def own_ports() -> list:
    """Free ports for a node's agents: the defaults (e.g. 52365 for the job agent) would collide
    with the other node, or with any other Ray on this machine, and leave the job server no agent."""
    flags = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
             "--runtime-env-agent-port", "--node-manager-port", "--object-manager-port")
    return [item for flag in flags for item in (flag, free_port())]


@pytest.fixture
def two_node_cluster():
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs_port, dashboard_port = free_port(), free_port()
    try:
        ray_cli("start", "--head", "--node-ip-address", "127.0.0.1", "--port", gcs_port, "--num-cpus", 1, *own_ports(),
                "--num-gpus", 0, "--temp-dir", f"{temp_dir}/h", "--include-dashboard", "true", "--dashboard-host",
                "127.0.0.1", "--dashboard-port", dashboard_port, "--disable-usage-stats")
        # Each node its own temp dir, as on real machines: nodes sharing one would delete each
        # other's unpacked runtime_env packages.
        ray_cli("start", "--address", f"127.0.0.1:{gcs_port}", "--node-ip-address", "127.0.0.1", "--num-cpus", 1, *own_ports(),
                "--num-gpus", 0, "--temp-dir", f"{temp_dir}/w", "--disable-usage-stats")
        yield f"http://127.0.0.1:{dashboard_port}", temp_dir
    finally:
        stop_cluster(temp_dir)


def test_ray_job_submit_runs_a_search_on_two_nodes(two_node_cluster, tmp_path):
    address, temp_dir = two_node_cluster
    from ray.job_submission import JobStatus, JobSubmissionClient
    client = JobSubmissionClient(address)  # the second node has joined: `ray start` returns once it has
    storage = tmp_path / "runs"
    job_id = "smoke-" + tmp_path.name[-8:].replace("_", "")
    ray_cli("job", "submit", "--address", address, "--submission-id", job_id, "--no-wait", "--runtime-env",
            ROOT / "cluster" / "runtime_env.yaml", "--", "python", "-m", "search.run", "--space", "minilm",
            "--smoke-test", "--trials", 2, "--workers-per-trial", 2, "--address", "auto", "--storage", storage,
            "--experiment", "cluster-smoke", retry_on="No available agent")  # the job agent starts last
    deadline = time.time() + 600
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.time() < deadline, client.get_job_logs(job_id)[-3000:]
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    assert "2 worker(s) per trial" in logs

    mlflow = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("cluster-smoke")
    runs = mlflow.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags.get("role") for r in runs) == ["search", "trial", "trial"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all("ndcg_at_10" in r.data.metrics for r in runs if r.data.tags.get("role") == "trial")


@pytest.fixture(scope="module")
def token_head():
    """One node of 2 CPUs with Ray token auth on, as a user's cluster may run: (its clients'
    environment, GCS address, dashboard address)."""
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")
    env = {**cluster_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    gcs_port, dashboard_port = free_port(), free_port()
    try:
        ray_cli("start", "--head", "--node-ip-address", "127.0.0.1", "--port", gcs_port, "--num-cpus", 2, *own_ports(),
                "--num-gpus", 0, "--temp-dir", temp_dir, "--include-dashboard", "true", "--dashboard-host",
                "127.0.0.1", "--dashboard-port", dashboard_port, "--disable-usage-stats", env=env)
        yield env, f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dashboard_port}"
    finally:
        stop_cluster(temp_dir)


DRIVER = """
import json, os, ray
from search.ray_session import start_ray
start_ray(None)
worker = ray.get(ray.remote(lambda: dict(os.environ, nice=str(os.nice(0)))).remote())
print(json.dumps({"auth": os.environ.get("RAY_AUTH_MODE"), "worker": worker}))
"""


def test_a_driver_given_ray_address_joins_with_the_clusters_auth_and_no_local_settings(token_head):
    env, gcs, _ = token_head
    done = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**env, "RAY_ADDRESS": gcs, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["auth"] == "token"  # no override: with "disabled" the driver could not even connect
    worker = seen["worker"]
    assert worker["RAY_ADDRESS"].endswith(":" + gcs.split(":")[1])  # this cluster's GCS, by the machine's IP
    assert worker["RAY_TRAIN_V2_ENABLED"] == "1" and worker["RAY_AUTH_MODE"] == "token"
    local_only = (set(LOCAL_ENV) - {"RAY_AUTH_MODE"}) | {"RAY_API_SERVER_ADDRESS", "MALLOC_CONF"}
    assert not local_only & set(worker)
    assert "libjemalloc" not in worker.get("LD_PRELOAD", "") and worker["nice"] != "0"  # Ray's default niceness


def test_a_search_submitted_as_a_job_without_address_joins_the_jobs_cluster(token_head, tmp_path):
    env, _, dashboard = token_head
    storage = tmp_path / "runs"
    # Each trial takes both CPUs: a placement group the first left behind would stall the second.
    done = ray_cli("job", "submit", "--address", dashboard, "--runtime-env", ROOT / "cluster" / "runtime_env.yaml",
                   "--", "python", "-m", "search.run", "--space", "minilm", "--smoke-test", "--trials", 2,
                   "--epochs", 1, "--storage", storage, "--experiment", "job-smoke",
                   timeout=400, retry_on="No available agent", env=env)
    assert "succeeded" in done and "1 worker(s) per trial (CPU, 2 CPU each)" in done, done[-3000:]
    assert "the local Ray's dashboard" not in done  # it started no Ray of its own

    mlflow = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    runs = mlflow.search_runs([mlflow.get_experiment_by_name("job-smoke").experiment_id])
    assert sorted(r.data.tags.get("role") for r in runs) == ["search", "trial", "trial"]
    assert all(r.info.status == "FINISHED" for r in runs)
