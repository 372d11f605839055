"""`python -m search.run --dry-run`: every input resolved, the plan printed, exit 0, no Ray, nothing written."""
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from search import plan
from search.resources import TrialResources
from spaces import get_space
from tests.conftest import EMBEDDED, ROOT, SHARED_DL20

PLAN_LINES = ("studies: 1 × ", "training pairs: ", "steps per epoch", "dev: ", "rerank depth", "resources ",
              "worker(s) per trial", "trial(s) at once", "adamw: lr ", "lion: lr ", "checkpoints: ", "MLflow: ",
              "Optuna: sqlite:///")


def dry_run(tmp_path, *flags):
    """The CLI as a user runs it; Ray's temp dir is moved into tmp_path, so any Ray it started shows there."""
    storage, ray_tmp = tmp_path / "runs", tmp_path / "ray-tmp"
    storage.mkdir()
    ray_tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(ray_tmp)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "search.run", "--space", "minilm", "--dry-run",
                           "--storage", str(storage), *flags], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    return done, time.perf_counter() - started, storage, ray_tmp


@pytest.mark.parametrize("flags", [["--smoke-test"], []], ids=["smoke", "embedded"])
def test_dry_run_prints_the_plan_and_starts_and_writes_nothing(tmp_path, flags):
    done, seconds, storage, ray_tmp = dry_run(tmp_path, *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    for needle in PLAN_LINES:
        assert needle in done.stdout, (needle, done.stdout)
    assert str(EMBEDDED) in done.stdout
    assert list(storage.iterdir()) == [] and list(ray_tmp.iterdir()) == []  # no Ray session dir, no file
    print(f"dry run {flags}: {seconds:.1f} s")


def test_dry_run_on_a_data_dir(tmp_path):
    if not SHARED_DL20.is_dir():
        pytest.skip("../shared/data/trec-dl-2020-bm25-top100 is not beside this checkout")
    done, seconds, storage, ray_tmp = dry_run(tmp_path, "--data", str(SHARED_DL20))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rerank depth 100" in done.stdout and "studies: 1 × 20 trials × " in done.stdout
    assert list(storage.iterdir()) == [] and list(ray_tmp.iterdir()) == []
    print(f"dry run on DL20: {seconds:.1f} s")


def test_a_complete_prepared_copy_in_storage_is_read_not_rebuilt(tmp_path):
    from trainables.prepared import prepare
    storage, work = tmp_path / "runs", tmp_path / "work"
    base = {"data_dir": str(EMBEDDED), "run_file": None, "eval_runs": None}
    assert plan.prepared_root(base, storage, work) == work
    prepare(EMBEDDED, None, storage / "prepared")
    assert plan.prepared_root(base, storage, work) == storage


def test_study_names_new_resumed_and_extended():
    groups = plan.study_groups(False, ("adamw", "lion"))
    assert [n[3] for n in plan.study_names(groups, "e", None, False, None)] == ["new"]
    record = {"status": "FINISHED", "studies": {"adamw+lion": {"tune_name": "e-1-adamw+lion", "status": "FINISHED",
                                                                "optuna_study": "e-1-adamw+lion"}}}
    key, tune, study, what = plan.study_names(groups, "e", record, False, 3)[0]
    assert (tune, study, what) == ("e-1-adamw+lion-extend1", "e-1-adamw+lion", "extended by 3 trials")
    assert plan.study_names(groups, "e", record, False, None)[0][3] == "new"  # no flag: a new search
    record["studies"]["adamw+lion"]["status"] = "KILLED"
    assert plan.study_names(groups, "e", record, True, None)[0][1:] == ("e-1-adamw+lion", "e-1-adamw+lion",
                                                                       "KILLED: resumed")
    assert len(plan.study_groups(True, ("adamw", "lion"))) == 2


def test_ranges_and_resources_lines():
    space = get_space("minilm")
    lines = plan.ranges(space, plan.study_groups(True, ("adamw", "lion", "muon", "adamw_schedulefree")))
    assert lines[0].startswith("  adamw: lr ") and "scheduler constant|linear|cosine|wsd" in lines[-1]
    assert "beta2 0.98|0.99" in lines[1] and "aux_lr" in lines[2] and "scheduler constant" in lines[3]
    args = SimpleNamespace(gpus_per_trial=None, workers_per_trial=None)
    assert "from the cluster's nodes" in plan.describe_resources(None, args)
    gpu = plan.describe_resources(TrialResources(3, True, 8, 2), args)
    assert "3 worker(s) per trial, 3 GPU(s) per trial, 8 CPU(s) per worker, 2 trial(s) at once" in gpu
