from argparse import Namespace

import pytest

from search import validate
from search.validate import check_expect_gpus, planned_resources, planned_workers
from trainables.errors import UsageError


def flags(**given):
    return Namespace(**{"address": "10.0.0.1:6379", "gpus_per_trial": None, "workers_per_trial": None,
                        "max_concurrent": None, "expect_gpus": None, "expect_gpus_timeout": 300.0, **given})


@pytest.mark.parametrize("given,needle", [
    ({"gpus_per_trial": -1}, "--gpus-per-trial must be >= 0"), ({"workers_per_trial": 0}, "--workers-per-trial must"),
    ({"max_concurrent": 0}, "--max-concurrent must be >= 1"),
    ({"gpus_per_trial": 3, "workers_per_trial": 2}, "one worker per GPU")])
def test_flags_no_cluster_could_meet_fail_without_ray(given, needle):
    with pytest.raises(UsageError, match=needle):
        planned_workers(flags(**given))


def test_a_cluster_elsewhere_leaves_the_default_plan_to_ray():
    assert planned_workers(flags()) is None
    assert planned_workers(flags(gpus_per_trial=3)) == 3 and planned_workers(flags(workers_per_trial=2)) == 2


def test_a_local_ray_plans_from_this_machine(monkeypatch):
    monkeypatch.setattr(validate, "starts_local_ray", lambda address: True)
    monkeypatch.setattr(validate, "local_resources", lambda: (16.0, 4.0))
    plan = planned_resources(flags(address=None))
    assert (plan.num_workers, plan.use_gpu, plan.concurrency, plan.cpus_per_worker) == (3, True, 1, 5)
    assert planned_workers(flags(address=None, gpus_per_trial=0, max_concurrent=2)) == 1
    monkeypatch.setattr(validate, "starts_local_ray", lambda address: False)
    assert planned_resources(flags()) is None


@pytest.mark.parametrize("given,needle", [({"expect_gpus": 0}, "--expect-gpus must be >= 1"),
                                          ({"expect_gpus": 2, "expect_gpus_timeout": -1.0}, "timeout must be >= 0")])
def test_expect_gpus_flags(given, needle):
    with pytest.raises(UsageError, match=needle):
        check_expect_gpus(flags(**given))
    check_expect_gpus(flags(expect_gpus=12))  # a cluster elsewhere may still grow to 12
