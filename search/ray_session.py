"""The Ray side of a search: the environment every Ray process gets, starting (or joining) a
cluster, and what the cluster's GPU nodes can give each worker."""
from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

from trainables.errors import UsageError

# Every Ray process's environment, on any cluster (the driver's too):
RUNTIME_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
               "RAY_AIR_NEW_OUTPUT": "0", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "RAY_TRAIN_V2_ENABLED": "1"}

# Only for the Ray instance search.run starts itself on this machine:
LOCAL_ENV = {
    # a new local Ray turns token auth on by default; this one listens on 127.0.0.1 for this search
    # alone. On a cluster the cluster's and the user's own setting stands, in the driver too;
    "RAY_AUTH_MODE": "disabled",
    # one machine has no spot preemption to watch for; Train's watcher polls for it in an actor
    # that takes CPU from the trainers for the whole trial;
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    # Ray starts every worker at nice 15 so that its own daemons come first on a busy node. A
    # trial's trainers are workers, so on a CPU machine every wake-up of GCS, raylet, dashboard or
    # an agent (nice 0) preempted a torch thread at once and the OpenMP team waited for it
    # (docs/benchmarks.md). Workers read this from their own environment when they start.
    "RAY_worker_niceness": "0",
}


def local_env(dashboard_port: int) -> dict:
    """Every process's environment on a Ray started here, whose state API (served by the dashboard
    on dashboard_port) Ray Train uses to release a finished trial's placement group."""
    return {**RUNTIME_ENV, **LOCAL_ENV, **allocator_env(),
            "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard_port}"}


# jemalloc told never to give freed pages back to the OS (-1: no decay), so each step reuses them.
KEEP_FREED_PAGES = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def allocator_env(environ=os.environ) -> dict:
    """Workers run on the jemalloc that Ray's wheel ships (its own daemons already use it).

    Why: glibc's malloc returns large freed blocks (above its mmap threshold, at most 32 MB; the
    embedding gradient of MiniLM alone is 47 MB) and the top of its heap to the OS, so every step
    faults fresh zeroed pages back in and spends its CPU time in the kernel; jemalloc keeping freed
    pages reuses them (docs/benchmarks.md). A preload the user chose
    (LD_PRELOAD, e.g. tcmalloc) is kept.
    Only on the Ray started here: on a cluster the library's path may differ from node to node."""
    import ray
    jemalloc = Path(ray.__file__).parent / "core" / "libjemalloc.so"
    if environ.get("LD_PRELOAD") or not jemalloc.is_file():
        return {}
    return {"LD_PRELOAD": str(jemalloc), "MALLOC_CONF": KEEP_FREED_PAGES}


# The dashboard modules a local search needs: the state API (StateHead), which Ray Train's
# placement-group cleaner polls every second and its state actor every 30 s, and the usage-stats
# module Ray itself keeps when it runs without a dashboard. The other eight (jobs, metrics, nodes,
# reporter, events, serve, data, train pages) are a Python process each, waking many times a
# second: memory and CPU taken from trials that fill the machine (docs/benchmarks.md).
# --full-ray-dashboard keeps them.
LEAN_DASHBOARD = ("StateHead", "UsageStatsHead")


@contextmanager
def dashboard_modules(modules):
    """While Ray starts inside this block, its dashboard loads only `modules` (None: all of them).

    ray.init has no parameter for this; the dashboard's own command line has (--modules-to-load,
    what Ray itself passes when started without a dashboard), so the command Ray builds for it is
    extended on its way to the process launcher. Had a Ray version stopped calling that launcher,
    the dashboard would simply start in full."""
    from ray._private import ray_constants, services
    launch = services.start_ray_process

    def launch_with_modules(command, process_type, *args, **kwargs):
        if (modules and process_type == ray_constants.PROCESS_TYPE_DASHBOARD
                and not any(part.startswith("--modules-to-load") for part in command)):
            command = [*command, "--modules-to-load=" + ",".join(modules)]
        return launch(command, process_type, *args, **kwargs)

    services.start_ray_process = launch_with_modules
    try:
        yield
    finally:
        services.start_ray_process = launch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_ray_arguments(parser) -> None:
    """The options of every command that runs trials on Ray (search.run, search.rerun)."""
    parser.add_argument("--address", default=None, help="existing Ray cluster (default: the one RAY_ADDRESS or a Ray job names, "
                                                           "else start a local one)")
    parser.add_argument("--full-ray-dashboard", action="store_true",
                        help="give the local Ray's dashboard every page (default: only the state API that Ray "
                             "Train needs; the other pages' modules cost memory and CPU time beside the trials)")


def init_local_ray(full_dashboard: bool = False, **options) -> None:
    """A Ray instance on this machine, as search.run starts it (options: more ray.init arguments).

    Ray Train releases a finished trial's placement group through the state API, which the
    dashboard serves; pointing every process at this cluster's own dashboard keeps it from
    guessing wrong when another Ray instance runs on the same machine."""
    import ray
    os.environ["RAY_AUTH_MODE"] = LOCAL_ENV["RAY_AUTH_MODE"]  # ray.init reads it from the driver's environment
    port = free_port()
    with dashboard_modules(None if full_dashboard else LEAN_DASHBOARD):
        # "local": a new instance even where `ray start` left a cluster for ray.init() to find
        ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                 runtime_env={"env_vars": local_env(port)}, **options)


# Set in a job's driver by Ray's job supervisor, beside RAY_ADDRESS (the job's cluster).
JOB_CONFIG_VARIABLE = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def cluster_to_join(address, environ=os.environ):
    """The cluster a search joins, None to start a local Ray: --address, else, as `ray.init()` would,
    the one named by RAY_ADDRESS or the one of the job it runs in (`ray job submit` without --address)."""
    if address:
        return address
    return "auto" if environ.get("RAY_ADDRESS") or JOB_CONFIG_VARIABLE in environ else None


def start_ray(address, full_dashboard: bool = False):
    import ray
    address = cluster_to_join(address)
    os.environ.update(RUNTIME_ENV)
    try:
        if address:
            # Every Ray process is told which cluster is its own (RAY_ADDRESS), so Ray Train's
            # state-API calls never have to guess among several instances on one machine.
            from ray._private.services import canonicalize_bootstrap_address_or_die
            bootstrap = canonicalize_bootstrap_address_or_die(address) if "://" not in address else address
            env = {**RUNTIME_ENV, **({"RAY_ADDRESS": bootstrap} if "://" not in bootstrap else {})}
            ray.init(address=bootstrap, runtime_env={"env_vars": env}, log_to_driver=True)
        else:
            init_local_ray(full_dashboard, log_to_driver=True)
            if not full_dashboard:
                print("the local Ray's dashboard serves the state API only (--full-ray-dashboard: every page)",
                      file=sys.stderr)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = os.environ.get("RAY_ADDRESS") if address == "auto" else address
        raise UsageError(f"cannot reach Ray cluster at {where or address or 'local'}: {err}") from None
    return ray.cluster_resources()


def largest_gpu_node() -> float | None:
    """The most GPUs any live node has (None without GPU nodes)."""
    import ray
    counts = [node["Resources"].get("GPU", 0) for node in ray.nodes() if node.get("Alive")]
    return max(counts) if any(counts) else None


def cpus_per_gpu() -> float | None:
    """The fewest CPUs any live GPU node has per GPU (None without GPU nodes)."""
    import ray
    shares = [node["Resources"].get("CPU", 0) / node["Resources"]["GPU"] for node in ray.nodes()
              if node.get("Alive") and node["Resources"].get("GPU", 0) > 0]
    return min(shares) if shares else None


def local_resources() -> tuple[float, float] | None:
    """(CPUs, GPUs) a local Ray would find on this machine, counted as Ray counts them, so a plan
    can be checked before Ray starts; None when this Ray version hides how."""
    try:
        from ray._private.resource_and_label_spec import ResourceAndLabelSpec
        from ray._private.utils import get_num_cpus
        return get_num_cpus(), ResourceAndLabelSpec._get_current_node_accelerator(None, {})[1]
    except (ImportError, AttributeError, TypeError):
        return None


def starts_local_ray(address) -> bool:
    """Whether start_ray(address) starts a Ray of its own on this machine: ray.init without an
    address joins RAY_ADDRESS or a cluster `ray start` left here, if there is one."""
    if address:
        return False
    try:
        from ray._private.services import canonicalize_bootstrap_address
        return canonicalize_bootstrap_address(None) is None
    except (ImportError, AttributeError, ConnectionError, ValueError):
        return False
