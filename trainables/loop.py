"""The per-worker training loop that Ray Train's TorchTrainer runs on every worker of a trial.

Reads top to bottom: config → data → model (fresh or from checkpoint, mid-epoch included) → epochs
of train steps, with a dev rerank + score → checkpoint + report every eval_every steps and at each
epoch end. Tune and ASHA act on each report.
"""
from __future__ import annotations

import copy
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from trainables.checkpoint import MODEL_DIR, TEST_PER_QUERY, load_state, save_checkpoint
from trainables.reporting import epochs_done, report_due, resume_point, saved_position
from trainables.rng import gather_rng_states, restore_rng, seed_rank
from trainables.config import TrainConfig
from trainables.data import Pair, RetrievalData, steps_per_epoch, training_pairs, worker_batches
from trainables.errors import UsageError
from trainables.evaluate import candidates, mean_metrics
from trainables.groups import training_groups
from trainables.losses import group_size
from trainables.models import load_reranker, loadable_dir
from trainables.optim import (build_optimizer, build_scheduler, evaluation_weights, load_optimizer_state,
                              training_weights)
from trainables.precision import autocast_dtype as choose_autocast
from trainables.prefetch import ahead
from trainables.scoring import evaluate_dev, evaluate_test
from trainables.step import StepSettings, train_step
from trainables.throughput import EpochMeter
from trainables.pairs import from_judged, pair_lengths
from trainables.prepared import Prepared, open_prepared, take
from trainables.split import split_queries
from trainables.triples import triple_pairs


def train_loop_per_worker(config: dict) -> None:
    began = time.perf_counter()
    cfg = TrainConfig.from_dict(config)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    quiet_libraries()

    # Distributed workers must agree: same files, same seeded split, same pairs on every rank.
    trial_data = load_trial_data(cfg)
    data, pairs, dev_qids = trial_data.eval, trial_data.pairs, trial_data.dev_qids
    data_ready = time.perf_counter() - began
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
    step, first_epoch, skip = 0, 0, 0
    if state:  # mid-epoch too: continue that epoch's batch order after the steps already done
        load_optimizer_state(optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        first_epoch, skip = resume_point(state, steps_each_epoch)
    meter = EpochMeter(model, device, world_size)
    model = ray.train.torch.prepare_model(model)  # DDP when world_size > 1: gradients are averaged
    # After DDP's weight broadcast: each rank its own dropout stream, restored exactly on resume.
    if not (state and restore_rng(state, rank, world_size, device)):
        seed_rank(cfg.seed + step, rank)
    if cfg.compile:
        model = torch.compile(model, dynamic=True)  # dynamic: padded lengths vary from batch to batch
    autocast_dtype = choose_autocast(cfg.bf16, device)  # bf16 on GPUs and on CPUs with native bf16
    settings = StepSettings(cfg.batch_size, world_size, cfg.grad_clip, autocast_dtype, cfg.loss, trial_data.group)
    lengths = trial_data.lengths() if cfg.group_by_length else None
    prefetch_depth = cfg.prefetch_steps if cfg.prefetch_steps is not None else (2 if device.type == "cuda" else 0)
    # The prefetch thread may tokenise while a mid-epoch evaluation does: a Rust tokenizer is not
    # safe to share between threads, so training batches get their own copy.
    train_tokenizer = copy.deepcopy(tokenizer) if prefetch_depth else tokenizer

    def encode_step(micro_batches):  # one optimiser step's micro-batches, tokenised and on the device
        return [encode(trial_data.texts(micro), train_tokenizer, cfg.max_length, device)
                for micro in micro_batches]

    def evaluate_and_report(step: int, steps_since: int, loss_sum: torch.Tensor) -> None:
        """Dev metrics after `step`, train figures of the steps since the last report, a checkpoint, and ray.train.report.
        Every rank calls it after the same step: it all-reduces and gathers."""
        with evaluation_weights(optimizer):  # schedule-free: score and save the averaged weights
            report(step, steps_since, loss_sum)

    def report(step: int, steps_since: int, loss_sum: torch.Tensor) -> None:
        train_seconds = meter.train_seconds()
        started = time.perf_counter()
        metrics = evaluate_dev(unwrap(model), tokenizer, data, dev_pairs, cfg, device, autocast_dtype,
                               rank, world_size)
        metrics.update(epoch=epochs_done(step, steps_each_epoch), step=step, lr=scheduler.get_last_lr()[0],
                       train_loss=mean_over_workers(loss_sum, world_size).item() / steps_since,
                       pairs_per_s=steps_since * cfg.batch_size / train_seconds,
                       train_s=train_seconds, eval_s=time.perf_counter() - started,
                       **meter.epoch_metrics(train_seconds, steps_since))
        test_per_query = None
        if cfg.evaluate_test and step == steps_each_epoch * cfg.epochs:  # seed reruns: the final checkpoint on test
            test_per_query = evaluate_test(unwrap(model), tokenizer, data, cfg, device, autocast_dtype, rank,
                                           world_size, metrics["first_stage_weight"])
            metrics.update({f"test_{k}": v for k, v in mean_metrics(test_per_query).items()})
        rng_states = gather_rng_states(device, world_size)  # every rank calls it: a collective
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:  # one writer; the other ranks report the same metrics without a checkpoint
                directory = save_checkpoint(Path(tmp) / "checkpoint", unwrap(model), tokenizer, {
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                    **saved_position(step, steps_each_epoch), "rng_states": rng_states, "metrics": metrics},
                    max_length=cfg.max_length)
                if test_per_query is not None:  # per-query scores travel in the checkpoint, not the metrics
                    (directory / TEST_PER_QUERY).write_text(json.dumps(test_per_query))
                saved = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=saved)

    # benchmarks/scale.py reads this line: start-up must not grow with the collection
    print(f"worker {rank}/{world_size}: data ready in {data_ready:.1f} s, first step after "
          f"{time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    meter.start_epoch()  # train-side figures cover the steps since the last report
    loss_sum, steps_since = torch.zeros((), device=device), 0
    for epoch in range(first_epoch, cfg.epochs):
        model.train()
        training_weights(optimizer)
        # Workers must agree: the order depends on (seed, epoch) only, so a resumed epoch is the same.
        batches = worker_batches(len(pairs), epoch, cfg.seed, cfg.batch_size, cfg.grad_accum, rank, world_size,
                                 lengths, trial_data.group)
        for micro_batches in ahead(batches[skip:], encode_step, prefetch_depth):
            for inputs, _ in micro_batches:
                meter.count(inputs["attention_mask"])
            loss_sum += train_step(model, micro_batches, optimizer, scheduler, settings)
            step, steps_since = step + 1, steps_since + 1
            if report_due(step, steps_each_epoch, cfg.eval_every):  # the same steps on every rank
                evaluate_and_report(step, steps_since, loss_sum)
                model.train()
                meter.start_epoch()
                loss_sum, steps_since = torch.zeros((), device=device), 0
        skip = 0  # only the resumed epoch had steps done
    if state and first_epoch >= cfg.epochs:
        # Resumed after the last epoch was saved but before its report reached Tune (the driver
        # died in between): report it again, or the trial would end without a result.
        ray.train.report(state.get("metrics", {}))
    meter.close()


@dataclass
class TrialData:
    """What one trial trains and scores on: training pairs as rows of the prepared tables, and the
    dev and test queries (only those) as a RetrievalData for scoring."""

    prepared: Prepared
    pairs: object  # trainables.pairs.PairRows or TriplePairs
    eval: RetrievalData
    dev_qids: list[str]
    group: int = 1  # pairs a micro-batch keeps together (trainables.losses.group_size)

    def texts(self, indices) -> tuple[list[str], list[str], list[float]]:
        q, p, labels = self.pairs.rows(indices)
        return self.prepared.query_texts(q), self.prepared.passage_texts(p), labels.tolist()

    def lengths(self):
        return pair_lengths(self.pairs, self.prepared.lengths("queries"), self.prepared.lengths("passages"))

    def id_pairs(self) -> list[Pair]:
        """The pairs as (qid, pid, label) objects: for small data and tools outside the loop."""
        q, p, labels = self.pairs.rows(range(len(self.pairs)))
        return [Pair(*fields) for fields in zip(take(self.prepared.queries.column("qid"), q).to_pylist(),
                                                take(self.prepared.passages.column("pid"), p).to_pylist(),
                                                labels.tolist())]


def load_trial_data(cfg: TrainConfig) -> TrialData:
    """The trial's queries (trainables/split.py); pairs from the data dir's triples or from judged
    positives + first-stage hard negatives of the train queries."""
    prepared = open_prepared(cfg.data_dir, cfg.run_file, cfg.prepared, cfg.eval_runs)
    split = split_queries(prepared, cfg)
    has_triples = "triples" in prepared.tables
    if cfg.training_data == "triples" and not has_triples:
        raise UsageError(f"{cfg.data_dir}: training_data='triples' but there is no triples*.tsv")
    judged = not has_triples or cfg.training_data == "judged"
    top = prepared.view((split.train if judged else []) + split.scored)
    if judged and cfg.loss == "listwise":
        pairs = from_judged(training_groups(top, split.train, cfg.negatives_per_query, cfg.negative_depth,
                                            cfg.positive_level, cfg.seed), top.rows)
    elif judged:
        pairs = from_judged(training_pairs(top, split.train, cfg.negatives_per_query, cfg.negative_depth,
                                           cfg.positive_level, cfg.graded_labels, cfg.seed, prepared.top_grade()),
                            top.rows)
    else:  # every dev, test and eval-set query (not only the first max_dev_queries) stays out of training
        pairs = triple_pairs(prepared, split.excluded, cfg.max_triples, cfg.split_seed)
    view = prepared.view(split.dev, eval_set=cfg.dev_set) if cfg.dev_set else top
    return TrialData(prepared, pairs, view, split.dev, group_size(cfg.loss, not judged, cfg.negatives_per_query))


def encode(texts, tokenizer, max_length: int, device):
    """Tokenise (queries, passages, labels), padded only to the longest in the batch."""
    queries, passages, labels = texts
    inputs = tokenizer(queries, passages, padding=True, truncation="only_second", max_length=max_length,
                       return_tensors="pt")
    labels = torch.tensor(labels, dtype=torch.float32)
    if device.type == "cuda":  # pinned host memory lets the copy overlap with the running step
        return ({k: v.pin_memory().to(device, non_blocking=True) for k, v in inputs.items()},
                labels.pin_memory().to(device, non_blocking=True))
    return inputs.to(device), labels.to(device)


def mean_over_workers(value: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size > 1:
        value = value.clone()
        dist.all_reduce(value)  # workers must agree: every rank calls this once per report
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
