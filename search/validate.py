"""Checks of the resource flags that need no running Ray, made before Ray starts: a search that
cannot run fails in seconds with one line, not in a worker minutes later."""
from __future__ import annotations

from search import resources
from search.ray_session import local_resources, starts_local_ray
from trainables.errors import UsageError
from trainables.paths import check_output


def planned_workers(args) -> int | None:
    """Workers per trial as the flags (and, for a Ray started here, this machine) give them;
    None when only the running cluster can tell. Flags no cluster could satisfy fail here."""
    planned = planned_resources(args)
    return args.gpus_per_trial or args.workers_per_trial if planned is None else planned.num_workers


def planned_resources(args) -> resources.TrialResources | None:
    """The plan a Ray started here would make, from this machine's CPUs and GPUs counted as Ray counts
    them; None when the search joins a cluster (only the running cluster can tell)."""
    max_concurrent = getattr(args, "max_concurrent", None)  # search.rerun runs one at a time
    resources.check_flags(args.gpus_per_trial, args.workers_per_trial, max_concurrent)
    local = local_resources() if starts_local_ray(args.address) else None
    if local is None:
        return None
    cpus, gpus = local
    return resources.plan(cpus, gpus, args.gpus_per_trial, args.workers_per_trial, max_concurrent,
                          max_node_gpus=gpus or None)


def check_expect_gpus(args) -> None:
    """--expect-gpus that a Ray started here could never meet: no other node joins it."""
    resources.check_expect_flags(args.expect_gpus, args.expect_gpus_timeout)
    local = local_resources() if args.expect_gpus and starts_local_ray(args.address) else None
    if local is not None and local[1] < args.expect_gpus:
        raise UsageError(f"--expect-gpus {args.expect_gpus}: this machine has {int(local[1])} GPU(s), and no node "
                         f"joins the Ray that search.run starts here; pass --address to use a cluster")


def check_outputs(args) -> None:
    """--storage must be creatable as a directory and --output-json as a file, before hours of trials."""
    check_output(args.storage, "--storage", directory=True)
    if args.output_json:
        check_output(args.output_json, "--output-json")
