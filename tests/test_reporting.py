"""trainables.reporting: reports every eval_every steps and at epoch ends, and a trial interrupted
mid-epoch (a worker that fails after a report; a worker killed for real) ends with the weights of
an uninterrupted run: no pair repeated or skipped, dropout streams restored."""
import glob
import signal

import glob
import signal
import threading
import time

import psutil
import pytest
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from safetensors.torch import load_file

from tests.test_loop import config
from trainables.errors import UsageError
from trainables.loop import train_loop_per_worker
from trainables.reporting import epochs_done, report_due, resume_point, saved_position, total_steps


def test_reports_every_n_steps_and_at_epoch_ends_once():
    due = [s for s in range(1, 25) if report_due(s, steps_each_epoch=12, eval_every=5)]
    assert due == [5, 10, 12, 15, 20, 24]
    assert [s for s in range(1, 25) if report_due(s, 12, 4)] == [4, 8, 12, 16, 20, 24]  # 12, 24: once each
    assert [s for s in range(1, 25) if report_due(s, 12, None)] == [12, 24]


def test_epochs_are_fractional_mid_epoch_and_whole_at_its_end():
    assert epochs_done(12, 12) == 1 and isinstance(epochs_done(12, 12), int)
    assert epochs_done(15, 12) == 1.25
    assert total_steps(num_pairs=100, batch_size=8, epochs=3) == 36  # the last 4 pairs of an epoch are dropped


@pytest.mark.parametrize("step, first_epoch, skip", [(5, 0, 5), (12, 1, 0), (15, 1, 3), (24, 2, 0)])
def test_a_checkpoint_resumes_in_its_epoch_after_the_steps_done(step, first_epoch, skip):
    state = {"step": step, **saved_position(step, 12)}
    assert resume_point(state, 12) == (first_epoch, skip)


def test_an_epoch_end_checkpoint_from_before_eval_every_resumes_at_the_next_epoch():
    assert resume_point({"step": 24, "epoch": 1}, 12) == (2, 0)


def test_a_checkpoint_that_does_not_fit_the_pairs_is_refused():
    with pytest.raises(UsageError, match="training pairs"):
        resume_point({"step": 15, **saved_position(15, 12)}, 10)


def fit(train_loop, cfg, storage, name):
    trainer = TorchTrainer(
        train_loop, train_loop_config=cfg,
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=name, storage_path=str(storage), checkpoint_config=CheckpointConfig(num_to_keep=None),
                             failure_config=FailureConfig(max_failures=1)))
    return trainer.fit()


def BASE(model):  # 96 pairs, batch 8: 12 steps per epoch; linear schedule with warmup; the tiny BERT's dropout
    return config(model, epochs=2, scheduler="linear", warmup_ratio=0.1)


@pytest.fixture(scope="module")
def steady(ray_local, tiny_bert, tmp_path_factory):
    """The uninterrupted run, without eval_every: epoch ends only."""
    result = fit(train_loop_per_worker, BASE(tiny_bert), tmp_path_factory.mktemp("steady"), "steady")
    assert [m["epoch"] for _, m in result.best_checkpoints] == [1, 2]
    return result


def weights(result) -> dict:
    with result.checkpoint.as_directory() as directory:
        return load_file(f"{directory}/model/model.safetensors")


def assert_same_weights(final: dict, expected: dict) -> None:
    """Mid-epoch reports and the resume changed no training step."""
    assert final.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-6, atol=1e-7, msg=name)


def test_a_worker_failing_mid_epoch_resumes_at_its_step_with_the_same_result(ray_local, tiny_bert, steady, tmp_path):
    marker = tmp_path / "failed-once"

    def fail_once_after_step_20(cfg):  # defined here, so Ray ships it by value to its worker
        import ray.train
        report = ray.train.report

        def report_then_fail(metrics, checkpoint=None):
            report(metrics, checkpoint=checkpoint)
            if metrics["step"] == 20 and not marker.exists():  # 8 steps into the second epoch
                marker.touch()
                raise RuntimeError("worker fails after the step-20 report")
        ray.train.report = report_then_fail  # Ray's report, with a failure injected after it
        train_loop_per_worker(cfg)

    resumed = fit(fail_once_after_step_20, {**BASE(tiny_bert), "eval_every": 4}, tmp_path, "resumed")
    assert marker.exists() and resumed.error is None
    reports = sorted((m["step"], m["epoch"]) for _, m in resumed.best_checkpoints)
    # Once each: a restart from scratch would report steps 4-20 again.
    assert reports == [(s, s // 12 if s % 12 == 0 else s / 12) for s in (4, 8, 12, 16, 20, 24)]
    assert_same_weights(weights(resumed), weights(steady))


def kill_worker_after_first_checkpoint(storage, name) -> threading.Thread:
    """SIGKILL this test's Ray Train worker once the run's first checkpoint is in storage."""
    def watch():
        while not glob.glob(str(storage / name / "checkpoint_*")):
            time.sleep(0.2)
        while not (workers := [p for p in psutil.Process().children(recursive=True)
                               if "RayTrainWorker" in " ".join(p.cmdline())]):
            time.sleep(0.2)
        workers[0].send_signal(signal.SIGKILL)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_killed_worker_resumes_mid_epoch_with_the_same_result(ray_local, tiny_bert, steady, tmp_path):
    killer = kill_worker_after_first_checkpoint(tmp_path, "killed")
    resumed = fit(train_loop_per_worker, {**BASE(tiny_bert), "eval_every": 5}, tmp_path, "killed")
    assert not killer.is_alive() and resumed.error is None
    steps = [m["step"] for _, m in resumed.best_checkpoints]
    assert sorted(set(steps)) == [5, 10, 12, 15, 20, 24], steps
    assert steps.count(5) == 1, steps  # a restart from scratch would report step 5 again
    assert_same_weights(weights(resumed), weights(steady))
