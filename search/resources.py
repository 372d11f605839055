"""Resource math: how many workers a trial gets, what each holds, how many trials run at once."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

from trainables.errors import UsageError

DEFAULT_GPUS_PER_TRIAL = 3
DEFAULT_EXPECT_GPUS_TIMEOUT = 300.0


@dataclass(frozen=True)
class TrialResources:
    num_workers: int
    use_gpu: bool
    cpus_per_worker: int
    concurrency: int
    note: str = ""  # why the plan differs from the default one, for the user to read

    def worker_resources(self) -> dict:
        return {"GPU": 1, "CPU": self.cpus_per_worker} if self.use_gpu else {"CPU": self.cpus_per_worker}


def plan(cluster_cpus: float, cluster_gpus: float, gpus_per_trial: Optional[int],
         workers_per_trial: Optional[int], max_concurrent: Optional[int],
         cpus_per_gpu: Optional[float] = None, max_node_gpus: Optional[float] = None) -> TrialResources:
    """GPU mode: one worker per GPU, concurrency = floor(GPUs / GPUs per trial).
    CPU mode (gpus_per_trial=0, explicit or because the cluster has no GPU): the cores are shared
    evenly by the workers of the trials running at once. max_node_gpus: the most GPUs one node has."""
    note = ""
    if gpus_per_trial is None:
        gpus_per_trial, note = default_gpus_per_trial(cluster_gpus, max_node_gpus)
    check_flags(gpus_per_trial, workers_per_trial, max_concurrent)
    if gpus_per_trial > 0:
        if gpus_per_trial > cluster_gpus:
            raise UsageError(f"--gpus-per-trial {gpus_per_trial} but the cluster has {int(cluster_gpus)} GPU(s); "
                             f"use --gpus-per-trial 0 for CPU training")
        concurrency = int(cluster_gpus // gpus_per_trial)
        concurrency = min(concurrency, max_concurrent or concurrency)
        # CPUs for tokenising and loading, from the GPU nodes themselves (cpus_per_gpu: the least any
        # GPU node has per GPU), so a head node's CPUs never inflate what a worker asks for.
        share = cpus_per_gpu if cpus_per_gpu is not None else cluster_cpus / (concurrency * gpus_per_trial)
        cpus = max(1, int(share))
        return TrialResources(gpus_per_trial, True, cpus, concurrency, note)
    workers = 1 if workers_per_trial is None else workers_per_trial
    if workers > cluster_cpus:
        raise UsageError(f"--workers-per-trial {workers} but the cluster has {int(cluster_cpus)} CPU(s)")
    concurrency = min(max_concurrent or 1, int(cluster_cpus // workers))
    return TrialResources(workers, False, int(cluster_cpus // (workers * concurrency)), concurrency)


def check_flags(gpus_per_trial: Optional[int], workers_per_trial: Optional[int],
                max_concurrent: Optional[int]) -> None:
    """The resource flags no cluster could satisfy; checked before Ray starts and in plan()."""
    if gpus_per_trial is not None and gpus_per_trial < 0:
        raise UsageError("--gpus-per-trial must be >= 0")
    if workers_per_trial is not None and workers_per_trial < 1:
        raise UsageError("--workers-per-trial must be >= 1")
    if max_concurrent is not None and max_concurrent < 1:
        raise UsageError("--max-concurrent must be >= 1")
    if gpus_per_trial and workers_per_trial not in (None, gpus_per_trial):
        raise UsageError("with GPUs, a trial has one worker per GPU: leave --workers-per-trial unset "
                         "or equal to --gpus-per-trial")


def default_gpus_per_trial(cluster_gpus: float, max_node_gpus: Optional[float]) -> tuple[int, str]:
    """(GPUs per trial, note): the paper's 3, or all of the largest node's GPUs when it has fewer."""
    if cluster_gpus < 1:
        return 0, ""
    largest = int(cluster_gpus if max_node_gpus is None else max_node_gpus)
    if largest >= DEFAULT_GPUS_PER_TRIAL:
        return DEFAULT_GPUS_PER_TRIAL, ""
    return largest, (f"the largest GPU node has {largest} GPU(s), so each trial trains on {largest} "
                     f"(pass --gpus-per-trial {DEFAULT_GPUS_PER_TRIAL} for the paper's setting)")


def add_expect_gpus_arguments(parser) -> None:
    parser.add_argument("--expect-gpus", type=int, default=None, metavar="N",
                        help="wait until the cluster has N GPUs before planning (the plan is made once)")
    parser.add_argument("--expect-gpus-timeout", type=float, default=DEFAULT_EXPECT_GPUS_TIMEOUT, metavar="S",
                        help=f"give up after S seconds (default {DEFAULT_EXPECT_GPUS_TIMEOUT:.0f})")


def check_expect_flags(expected: Optional[int], timeout: float) -> None:
    if expected is not None and expected < 1:
        raise UsageError("--expect-gpus must be >= 1")
    if timeout < 0:
        raise UsageError("--expect-gpus-timeout must be >= 0")


def wait_for_gpus(cluster_resources: Callable[[], dict], expected: Optional[int], timeout: float,
                  poll: float = 5.0, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> dict:
    """The cluster's resources once at least `expected` GPUs have joined (at once without `expected`);
    nodes still starting would otherwise be planned as missing for the whole search."""
    check_expect_flags(expected, timeout)
    deadline = clock() + timeout
    while True:
        resources = cluster_resources()
        gpus = resources.get("GPU", 0)
        if expected is None or gpus >= expected:
            return resources
        if clock() >= deadline:
            raise UsageError(f"--expect-gpus {expected}: the cluster has {int(gpus)} GPU(s) after {timeout:.0f} s; "
                             f"check that every GPU node has joined (ray status)")
        sleep(min(poll, max(0.0, deadline - clock())))
