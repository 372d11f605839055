"""The per-worker training loop that Ray Train's TorchTrainer runs on every worker of a trial.

Reads top to bottom: config → data → model (fresh or from checkpoint) → epochs of
(train steps → dev rerank + score → checkpoint + report). Tune and ASHA act on each report.
"""
from __future__ import annotations

import json
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from trainables.checkpoint import MODEL_DIR, TEST_PER_QUERY, load_state, save_checkpoint
from trainables.rng import gather_rng_states, restore_rng, seed_rank
from trainables.config import TrainConfig
from trainables.data import Pair, RetrievalData, steps_per_epoch, worker_batches
from trainables.evaluate import candidates, mean_metrics
from trainables.models import load_reranker, loadable_dir
from trainables.optim import build_optimizer, build_scheduler
from trainables.precision import autocast_dtype as choose_autocast
from trainables.prefetch import ahead
from trainables.scoring import evaluate_dev, evaluate_test
from trainables.step import StepSettings, train_step
from trainables.throughput import EpochMeter
from trainables.trial_data import load_trial_data


def train_loop_per_worker(config: dict) -> None:
    cfg = TrainConfig.from_dict(config)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    quiet_libraries()

    # Distributed workers must agree: same files, same seeded split, same pairs on every rank.
    data, pairs, dev_qids = load_trial_data(cfg)
    dev_pairs = candidates(data.run, dev_qids, cfg.rerank_depth)
    steps_each_epoch = steps_per_epoch(len(pairs), cfg.batch_size)

    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else nullcontext() as checkpoint_dir:
        state = load_state(checkpoint_dir) if checkpoint_dir else None
        model_dir = Path(checkpoint_dir) / MODEL_DIR if checkpoint_dir else loadable_dir(cfg.model)
        torch.manual_seed(cfg.seed)  # the new head starts the same on every rank
        tokenizer, model = load_reranker(model_dir, cfg.attn_implementation)
    model.to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=steps_each_epoch * cfg.epochs)
    step, first_epoch = 0, 0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, first_epoch = state["step"], state["epoch"] + 1
    meter = EpochMeter(model, device, world_size)
    model = ray.train.torch.prepare_model(model)  # DDP when world_size > 1: gradients are averaged
    # After DDP's weight broadcast: each rank its own dropout stream, restored exactly on resume.
    if not (state and restore_rng(state, rank, world_size, device)):
        seed_rank(cfg.seed + step, rank)
    if cfg.compile:
        model = torch.compile(model, dynamic=True)  # dynamic: padded lengths vary from batch to batch
    autocast_dtype = choose_autocast(cfg.bf16, device)  # bf16 on GPUs and on CPUs with native bf16
    settings = StepSettings(cfg.batch_size, world_size, cfg.grad_clip, autocast_dtype)
    lengths = pair_lengths(pairs, data) if cfg.group_by_length else None
    prefetch_depth = cfg.prefetch_steps if cfg.prefetch_steps is not None else (2 if device.type == "cuda" else 0)

    def encode_step(micro_batches):  # one optimiser step's micro-batches, tokenised and on the device
        return [encode([pairs[i] for i in micro], data, tokenizer, cfg.max_length, device) for micro in micro_batches]

    for epoch in range(first_epoch, cfg.epochs):
        model.train()
        meter.start_epoch()
        loss_sum = torch.zeros((), device=device)
        batches = worker_batches(len(pairs), epoch, cfg.seed, cfg.batch_size, cfg.grad_accum, rank, world_size,
                                 lengths)
        for micro_batches in ahead(batches, encode_step, prefetch_depth):
            for inputs, _ in micro_batches:
                meter.count(inputs["attention_mask"])
            loss_sum += train_step(model, micro_batches, optimizer, scheduler, settings)
            step += 1
        train_seconds = meter.train_seconds()

        started = time.perf_counter()
        metrics = evaluate_dev(unwrap(model), tokenizer, data, dev_pairs, cfg, device, autocast_dtype,
                               rank, world_size)
        metrics.update(epoch=epoch + 1, step=step, lr=scheduler.get_last_lr()[0],
                       train_loss=mean_over_workers(loss_sum, world_size).item() / len(batches),
                       pairs_per_s=len(batches) * cfg.batch_size / train_seconds,
                       train_s=train_seconds, eval_s=time.perf_counter() - started,
                       **meter.epoch_metrics(train_seconds, len(batches)))
        test_per_query = None
        if cfg.evaluate_test and epoch == cfg.epochs - 1:  # seed reruns: the final checkpoint on test queries
            test_per_query = evaluate_test(unwrap(model), tokenizer, data, cfg, device, autocast_dtype, rank,
                                           world_size, metrics["first_stage_weight"])
            metrics.update({f"test_{k}": v for k, v in mean_metrics(test_per_query).items()})
        rng_states = gather_rng_states(device, world_size)  # every rank calls it: a collective
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:  # one writer; the other ranks report the same metrics without a checkpoint
                directory = save_checkpoint(Path(tmp) / "checkpoint", unwrap(model), tokenizer, {
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                    "epoch": epoch, "rng_states": rng_states, "metrics": metrics})
                if test_per_query is not None:  # per-query scores travel in the checkpoint, not the metrics
                    (directory / TEST_PER_QUERY).write_text(json.dumps(test_per_query))
                saved = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=saved)
    if state and first_epoch >= cfg.epochs:
        # Resumed after the last epoch was saved but before its report reached Tune (the driver
        # died in between): report it again, or the trial would end without a result.
        ray.train.report(state.get("metrics", {}))
    meter.close()


def encode(pairs, data: RetrievalData, tokenizer, max_length: int, device):
    """Tokenise (query, passage) pairs, padded only to the longest in the batch."""
    inputs = tokenizer([data.queries[p.qid] for p in pairs], [data.collection[p.pid] for p in pairs],
                       padding=True, truncation="only_second", max_length=max_length, return_tensors="pt")
    labels = torch.tensor([p.label for p in pairs], dtype=torch.float32)
    if device.type == "cuda":  # pinned host memory lets the copy overlap with the running step
        return ({k: v.pin_memory().to(device, non_blocking=True) for k, v in inputs.items()},
                labels.pin_memory().to(device, non_blocking=True))
    return inputs.to(device), labels.to(device)


def pair_lengths(pairs: list[Pair], data: RetrievalData) -> list[int]:
    """Characters per (query, passage) pair: a cheap, rank-independent proxy for token count."""
    return [len(data.queries[p.qid]) + len(data.collection[p.pid]) for p in pairs]


def mean_over_workers(value: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size > 1:
        value = value.clone()
        dist.all_reduce(value)  # workers must agree: every rank calls this once per epoch
        value /= world_size
    return value


def unwrap(model):
    """The plain transformers model under torch.compile's and DDP's wrappers."""
    model = getattr(model, "_orig_mod", model)
    return model.module if hasattr(model, "module") else model


def quiet_libraries() -> None:
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
