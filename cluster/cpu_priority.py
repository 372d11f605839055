"""On a CPU node that one trial fully occupies, Ray's own processes yield the CPU to training.

Why: every Ray worker process checks for signals every 10 ms (hard-coded in Ray's core worker),
so a trial's helper actors (Train's controller, placement-group cleaner, autoscaling coordinator,
synchronisation actor, dataset manager, Tune's trial actor), together with GCS, the dashboard and
the agents, wake over 1,000 times a second and use about 0.1 of a core between them (traced on
2 cores: benchmarks/contention.py). When every core runs a torch OpenMP thread, that CPU time is
taken from the team, and the whole team waits at its next barrier while one thread is away. What
helped most is the workers' niceness (Ray's default 15 ranked trainers below these daemons), set
to 0 in search/ray_session.LOCAL_ENV.

What: those processes are switched to SCHED_IDLE, the Linux class with the smallest weight, which
does not preempt a normal task when it wakes. Any user may do this to their own processes; only
going back needs privileges, so it is never applied to a process that may later become a trainer:
the raylet (workers inherit its class), pooled idle workers and the trainers themselves. Drivers
(search.run, a job's entrypoint) are left alone too. Nothing is done on GPU workers (their cores
are not saturated), when the trial leaves cores free, outside Linux, or on a Ray instance
search.run did not start itself (RAY_STARTED_BY_SEARCH, search/ray_session.py): a standing
cluster's daemons serve other jobs too, and a process once in SCHED_IDLE stays there.

Measured on a 6.18 kernel (EEVDF scheduler), 2 cores: the training threads were preempted ~750
instead of ~1,150 times a second, but the helpers still get their CPU time when a training
thread's time slice ends, so the share of time the team stalls (9-16%) and the step time did not
change beyond run-to-run noise (benchmarks/README.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

STARTED_BY_SEARCH = "RAY_STARTED_BY_SEARCH"  # set in the runtime env of a Ray that search.run started

# Ray's daemons that do not carry the session directory on their command line themselves.
RAY_DAEMONS = ("gcs_server", "raylet")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    name: str
    cmdline: str


def fully_subscribed(threads_per_worker: int, local_workers: int, node_cores: int) -> bool:
    """True when this trial's torch threads on the node cover all its cores."""
    return threads_per_worker * local_workers >= node_cores


def session_marker(session_dir: str) -> str:
    """The session directory's name, e.g. session_2026-11-30_12-00-00_000000_100."""
    return os.path.basename(session_dir.rstrip("/"))


def session_processes(procs: Iterable[Proc], session_dir: str) -> list[Proc]:
    """Processes of one Ray session: those whose command line names its session directory (GCS,
    raylet, dashboard, monitors) and everything they started (workers, agents, dashboard modules)."""
    procs = list(procs)
    members = {p.pid for p in procs if session_marker(session_dir) in p.cmdline}
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)
    stack = list(members)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in members:
                members.add(child)
                stack.append(child)
    return [p for p in procs if p.pid in members]


def to_yield(procs: Iterable[Proc], session_dir: str, trainer_pids: set[int]) -> list[Proc]:
    """The session's Ray processes that should yield: daemons, dashboard modules and actors; never
    the raylet, the trainers, pooled idle workers (a future trainer) or a driver."""
    chosen, marker = [], session_marker(session_dir)
    for p in session_processes(procs, session_dir):
        if p.pid in trainer_pids or p.name in ("raylet", "ray::IDLE") or "default_worker.py" in p.cmdline:
            continue  # default_worker.py: a worker still starting, before it names itself
        ray_named = (p.name.startswith(("ray::", "ray-dashboard-")) or p.name in RAY_DAEMONS
                     or marker in p.cmdline)
        if ray_named:
            chosen.append(p)
    return chosen


def process_table() -> list[Proc]:
    import psutil
    table = []
    for proc in psutil.process_iter(["pid", "ppid", "name", "cmdline", "uids"]):
        info = proc.info
        if info["uids"] is None or info["uids"].real != os.getuid():
            continue  # only our own processes: the others are not ours to touch
        table.append(Proc(info["pid"], info["ppid"] or 0, info["name"] or "", " ".join(info["cmdline"] or [])))
    return table


def idle_all_threads(pid: int) -> int:
    """Switches every thread of pid to SCHED_IDLE; returns how many were switched."""
    switched = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0  # ended meanwhile
    for tid in tids:
        try:
            os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
            switched += 1
        except OSError:
            pass  # ended meanwhile, or not permitted: leave it as it is
    return switched


def yield_ray_processes(session_dir: str, trainer_pids: set[int]) -> list[str]:
    """Applies to_yield on this node; returns the names of the processes that now yield."""
    if not hasattr(os, "SCHED_IDLE") or not os.path.isdir("/proc"):
        return []
    yielded = []
    for proc in to_yield(process_table(), session_dir, trainer_pids):
        if idle_all_threads(proc.pid):
            yielded.append(proc.name)
    return yielded


def yield_to_this_trial(threads_per_worker: int) -> list[str]:
    """Called by every worker of a CPU trial as its loop starts (Train's and Tune's helper actors
    exist by then). The first worker on each node applies it there, when the trial fills the node."""
    import ray
    import ray.train
    import torch.distributed as dist
    if os.environ.get(STARTED_BY_SEARCH) != "1":
        return []  # the same on every rank: the whole job has one runtime environment
    context = ray.train.get_context()
    node = ray.get_runtime_context().get_node_id()
    everyone = [(node, os.getpid())]
    if context.get_world_size() > 1:
        everyone = [None] * context.get_world_size()
        dist.all_gather_object(everyone, (node, os.getpid()))  # workers must agree: every rank calls this
    trainers = {pid for worker_node, pid in everyone if worker_node == node}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if context.get_local_rank() != 0 or not fully_subscribed(threads_per_worker, len(trainers), cores):
        return []
    session_dir = ray._private.worker.global_worker.node.get_session_dir_path()
    return yield_ray_processes(session_dir, trainers)
