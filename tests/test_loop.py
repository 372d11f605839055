"""The per-worker loop under a real Ray Train TorchTrainer, on a tiny model and the embedded data."""
import pytest
from ray.train import CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from tests.conftest import EMBEDDED
from trainables.checkpoint import load_state
from trainables.loop import train_loop_per_worker


def config(model, **overrides):
    return {"model": str(model), "data_dir": str(EMBEDDED), "optimizer": "adamw", "lr": 2e-3,
            "scheduler": "constant", "warmup_ratio": 0.0, "batch_size": 8, "max_length": 48,
            "max_train_queries": 24, "max_dev_queries": 4, "rerank_depth": 10, "negatives_per_query": 3,
            "num_threads": 1, **overrides}


def fit(cfg, storage, name, workers=1):
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=cfg,
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=name, storage_path=str(storage), checkpoint_config=CheckpointConfig(num_to_keep=None)))
    return trainer.fit()


def test_loss_falls_on_a_tiny_model(ray_local, tiny_bert, tmp_path):
    result = fit(config(tiny_bert, epochs=4), tmp_path, "loss-falls")
    losses = [metrics["train_loss"] for _, metrics in sorted(result.best_checkpoints, key=lambda c: c[1]["epoch"])]
    assert len(losses) == 4
    assert losses[-1] < losses[0] - 0.05, losses
    assert set(result.metrics) >= {"ndcg_at_10", "map", "mrr_at_10", "train_loss", "lr", "pairs_per_s"}


def test_listwise_trains_on_whole_groups_through_the_loop(ray_local, tiny_bert, tmp_path):
    # groups of a positive + 3 negatives, 2 per step of 8 pairs; the loss starts near log 4 (uniform)
    result = fit(config(tiny_bert, loss="listwise", epochs=3), tmp_path, "listwise")
    losses = [metrics["train_loss"] for _, metrics in sorted(result.best_checkpoints, key=lambda c: c[1]["epoch"])]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert result.metrics["model_ndcg_at_10"] is not None and result.metrics["first_stage_weight"] is not None


def test_checkpoint_then_resume_continues_from_saved_step(ray_local, tiny_bert, tmp_path):
    first = fit(config(tiny_bert, epochs=1, scheduler="linear"), tmp_path, "first")
    steps = first.metrics["step"]
    with first.checkpoint.as_directory() as directory:
        saved = load_state(directory)
        assert saved["step"] == steps and saved["epoch"] == 0
        from transformers import AutoModelForSequenceClassification
        AutoModelForSequenceClassification.from_pretrained(f"{directory}/model")
    # The same run name in the same storage is how a retried or resumed trial finds its checkpoint.
    resumed = fit(config(tiny_bert, epochs=2, scheduler="linear"), tmp_path, "first")
    assert [m["epoch"] for _, m in resumed.best_checkpoints] == [1, 2]  # epoch 1 restored, not retrained
    assert resumed.metrics["step"] == 2 * steps


def test_two_workers_agree_and_report_once_per_epoch(ray_local, tiny_bert, tmp_path):
    # batch 7 over 2 workers: an uneven split (4 + 3 pairs)
    result = fit(config(tiny_bert, epochs=1, batch_size=7), tmp_path, "ddp", workers=2)
    assert result.error is None and result.metrics["epoch"] == 1
    assert 0.0 <= result.metrics["ndcg_at_10"] <= 1.0
    with result.checkpoint.as_directory() as directory:
        streams = load_state(directory)["rng_states"]
    assert len(streams) == 2 and not streams[0]["cpu"].equal(streams[1]["cpu"])  # one dropout stream per rank


def test_prefetching_steps_changes_nothing_but_timing(ray_local, tiny_bert, tmp_path):
    inline = fit(config(tiny_bert, epochs=1, prefetch_steps=0), tmp_path, "inline")
    ahead = fit(config(tiny_bert, epochs=1, prefetch_steps=2), tmp_path, "ahead")
    for key in ("train_loss", "ndcg_at_10", "step"):
        assert ahead.metrics[key] == inline.metrics[key], key


@pytest.mark.parametrize("optimizer", ["adamw_schedulefree", "apollo_mini", "muon"])
def test_new_optimizers_train_checkpoint_and_resume(ray_local, tiny_bert, tmp_path, optimizer):
    # schedule-free: scored and saved in eval mode (its averaged weights), back in train mode to
    # step on; APOLLO: its projector objects load weights-only; muon: both members' state resumes.
    cfg = lambda epochs: config(tiny_bert, epochs=epochs, optimizer=optimizer, lr=1e-3,
                                aux_lr=1e-3 if optimizer == "muon" else None)
    first = fit(cfg(1), tmp_path, optimizer)
    with first.checkpoint.as_directory() as directory:
        saved = load_state(directory)["optimizer"]
    if optimizer == "adamw_schedulefree":
        assert not any(group["train_mode"] for group in saved["param_groups"])
    resumed = fit(cfg(2), tmp_path, optimizer)  # the same name: continues from the checkpoint
    assert resumed.error is None and [m["epoch"] for _, m in resumed.best_checkpoints] == [1, 2]
    assert resumed.metrics["step"] == 2 * first.metrics["step"]
