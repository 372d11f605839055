"""cluster/cpu_priority.py: which processes yield the CPU to a trial, on a process table and on a
real local Ray session with a 2-worker CPU trial."""
import json
import os
import subprocess
import sys

import pytest

from cluster.cpu_priority import Proc, fully_subscribed, idle_all_threads, session_processes, to_yield

SESSION = "/tmp/ray/session_2026-11-30_12-00-00_000000_100"
OTHER_SESSION = "/tmp/ray/session_2026-11-30_11-00-00_000000_900"

TABLE = [
    Proc(1, 0, "init", "init"),
    Proc(100, 1, "python", "python -m search.run --space minilm"),  # the driver that called ray.init
    Proc(101, 100, "gcs_server", f"gcs_server --session_dir={SESSION}"),
    Proc(102, 100, "python", f"python dashboard.py --session-dir={SESSION}"),
    Proc(103, 102, "ray-dashboard-StateHead-0", "ray-dashboard-StateHead-0 (python -c ...)"),
    Proc(104, 100, "raylet", f"raylet --session_dir={SESSION}"),
    Proc(105, 104, "ray::TrainController", "ray::TrainController"),
    Proc(106, 104, "ray::RayTrainWorker", "ray::RayTrainWorker"),
    Proc(107, 104, "ray::RayTrainWorker", "ray::RayTrainWorker"),
    Proc(108, 104, "ray::IDLE", "ray::IDLE"),
    Proc(109, 104, "ray::JobSupervisor", "ray::JobSupervisor"),
    Proc(110, 109, "python", "python -m search.run --space gte"),  # a job's entrypoint: a driver
    Proc(111, 104, "ray::DashboardAgent", "ray::DashboardAgent"),
    Proc(112, 104, "python", f"python default_worker.py --session-dir={SESSION}"),  # not yet named
    # another engineer's Ray on the same machine
    Proc(900, 1, "raylet", f"raylet --session_dir={OTHER_SESSION}"),
    Proc(901, 900, "ray::TrainController", "ray::TrainController"),
    Proc(950, 1, "bash", "bash"),
]


def test_fully_subscribed_when_the_trials_threads_cover_the_cores():
    assert fully_subscribed(threads_per_worker=2, local_workers=1, node_cores=2)
    assert fully_subscribed(threads_per_worker=1, local_workers=2, node_cores=2)
    assert not fully_subscribed(threads_per_worker=1, local_workers=1, node_cores=2)


def test_session_members_are_the_marked_daemons_and_what_they_started():
    members = {p.pid for p in session_processes(TABLE, SESSION)}
    assert members == {101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112}


def test_only_rays_own_processes_yield_never_raylet_trainers_idle_or_starting_workers_or_drivers():
    chosen = {p.pid for p in to_yield(TABLE, SESSION, trainer_pids={106, 107})}
    assert chosen == {101, 102, 103, 105, 109, 111}


def test_another_session_is_left_alone():
    assert {p.pid for p in to_yield(TABLE, OTHER_SESSION, trainer_pids=set())} == {901}
    assert not {900, 901} & {p.pid for p in to_yield(TABLE, SESSION, trainer_pids=set())}


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
def test_idle_all_threads_switches_every_thread_of_a_process():
    code = "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        while len(os.listdir(f"/proc/{child.pid}/task")) < 2:
            pass
        assert idle_all_threads(child.pid) == 2
        assert {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{child.pid}/task")} == {os.SCHED_IDLE}
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
def test_a_cpu_trial_filling_the_node_makes_rays_helpers_yield(ray_local, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def worker(config):
        import json
        import os

        import psutil
        import ray.train

        from cluster.cpu_priority import yield_to_this_trial
        # 2 workers x 1 thread on the fixture's 2 CPUs (this machine's 2 cores, or fewer CPUs
        # than cores on a bigger one, where the node is not filled and nothing may change).
        yielded = yield_to_this_trial(threads_per_worker=1)
        raylet = psutil.Process().parent()
        seen = {"yielded": yielded, "own_policy": os.sched_getscheduler(0), "nice": os.nice(0),
                "raylet": raylet.name(), "raylet_policy": os.sched_getscheduler(raylet.pid),
                "cores": len(os.sched_getaffinity(0)),
                "jemalloc": any("libjemalloc" in line for line in open("/proc/self/maps"))}
        rank = ray.train.get_context().get_world_rank()
        with open(os.path.join(config["out"], f"rank{rank}.json"), "w") as out:
            json.dump(seen, out)

    TorchTrainer(worker, train_loop_config={"out": str(tmp_path)},
                 scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                 run_config=RunConfig(name="yield", storage_path=str(tmp_path / "runs"))).fit()
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for seen in (first, second):  # the trainers and the raylet (their parent) keep their class
        assert seen["own_policy"] == os.SCHED_OTHER
        assert seen["nice"] == 0  # LOCAL_ENV: not Ray's default 15, below its own daemons
        assert seen["jemalloc"] or os.environ.get("LD_PRELOAD")  # allocator_env, unless the user preloads another
        assert seen["raylet"] == "raylet" and seen["raylet_policy"] == os.SCHED_OTHER
    assert second["yielded"] == []  # one worker per node applies it
    if first["cores"] > 2:
        assert first["yielded"] == []
        return
    assert "gcs_server" in first["yielded"] and "ray::PlacementGroupCleaner" in first["yielded"]
    assert any(name.startswith("ray::TrainController") for name in first["yielded"])
    assert not {"raylet", "ray::RayTrainWorker", "ray::IDLE"} & set(first["yielded"])


def test_a_ray_that_search_did_not_start_is_left_alone(monkeypatch):
    from cluster.cpu_priority import STARTED_BY_SEARCH, yield_to_this_trial
    monkeypatch.delenv(STARTED_BY_SEARCH, raising=False)
    assert yield_to_this_trial(threads_per_worker=64) == []
