import pytest

from search.resources import plan, wait_for_gpus
from trainables.errors import UsageError


def test_gpu_cluster_defaults_to_three_gpus_per_trial():
    resources = plan(cluster_cpus=32, cluster_gpus=8, gpus_per_trial=None, workers_per_trial=None, max_concurrent=None)
    assert (resources.num_workers, resources.use_gpu, resources.concurrency) == (3, True, 2)
    assert resources.worker_resources()["GPU"] == 1


def test_max_concurrent_caps_concurrency():
    assert plan(32, 8, 2, None, max_concurrent=1).concurrency == 1


def test_cpu_mode_shares_cores():
    resources = plan(cluster_cpus=2, cluster_gpus=0, gpus_per_trial=None, workers_per_trial=2, max_concurrent=None)
    assert (resources.num_workers, resources.use_gpu, resources.cpus_per_worker, resources.concurrency) == (2, False, 1, 1)


@pytest.mark.parametrize("args,needle", [((2, 0, 1, None, None), "has 0 GPU"), ((2, 0, 0, 3, None), "2 CPU"),
                                         ((8, 4, 2, 3, None), "one worker per GPU"), ((2, 0, 0, 1, 0), "max-concurrent")])
def test_impossible_requests_fail_at_once(args, needle):
    with pytest.raises(UsageError, match=needle):
        plan(*args)


def test_worker_cpus_come_from_gpu_nodes_not_the_head():
    # 2 GPU nodes of 48 CPUs / 4 GPUs plus a 16-CPU head: each GPU worker may hold 12 CPUs, not (112/6).
    resources = plan(cluster_cpus=112, cluster_gpus=8, gpus_per_trial=3, workers_per_trial=None,
                     max_concurrent=None, cpus_per_gpu=12.0)
    assert (resources.cpus_per_worker, resources.concurrency) == (12, 2)


@pytest.mark.parametrize("node_gpus,cluster_gpus,expected", [(8, 8, 3), (2, 4, 2), (1, 1, 1), (1, 3, 1)])
def test_default_trial_fits_the_largest_gpu_node(node_gpus, cluster_gpus, expected):
    resources = plan(64, cluster_gpus, None, None, None, max_node_gpus=node_gpus)
    assert resources.num_workers == expected and resources.use_gpu
    assert ("--gpus-per-trial 3" in resources.note) is (expected < 3)
    if cluster_gpus >= 3:  # the paper's 3 per trial stays available, spanning nodes
        assert plan(64, cluster_gpus, 3, None, None, max_node_gpus=node_gpus).num_workers == 3


def test_zero_workers_is_refused():
    with pytest.raises(UsageError, match="workers-per-trial must be >= 1"):
        plan(2, 0, 0, 0, None)


class FakeClock:
    """Time that passes only when the waiting code sleeps."""
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def joining(*gpu_counts):
    """A cluster whose GPU count goes through gpu_counts, one per look, then stays at the last."""
    looks = list(gpu_counts)
    return lambda: {"CPU": 48.0, "GPU": float(looks.pop(0) if len(looks) > 1 else looks[0])}


def test_wait_for_gpus_returns_once_the_expected_gpus_joined():
    clock = FakeClock()
    resources = wait_for_gpus(joining(0, 3, 6), 6, timeout=60, poll=5, clock=clock, sleep=clock.sleep)
    assert resources["GPU"] == 6 and clock.now == 10


def test_wait_for_gpus_without_expectation_looks_once():
    clock = FakeClock()
    assert wait_for_gpus(joining(0, 6), None, timeout=60, clock=clock, sleep=clock.sleep)["GPU"] == 0
    assert clock.now == 0


def test_wait_for_gpus_gives_up_with_one_line_after_the_timeout():
    clock = FakeClock()
    with pytest.raises(UsageError) as err:
        wait_for_gpus(joining(0, 3), 6, timeout=12, poll=5, clock=clock, sleep=clock.sleep)
    assert clock.now == 12 and "\n" not in str(err.value)
    assert str(err.value).startswith("--expect-gpus 6: the cluster has 3 GPU(s) after 12 s")


def test_wait_for_gpus_refuses_a_count_below_one():
    with pytest.raises(UsageError):
        wait_for_gpus(joining(0), 0, timeout=1)


def test_expect_gpus_is_a_search_run_flag():
    from search.run import parse_args
    args = parse_args(["--space", "minilm", "--expect-gpus", "6", "--expect-gpus-timeout", "30"])
    assert (args.expect_gpus, args.expect_gpus_timeout) == (6, 30.0)
    assert parse_args(["--space", "minilm"]).expect_gpus is None
