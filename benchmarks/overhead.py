"""Overhead of our trainable (Ray Train inside one Ray Tune trial) over a plain PyTorch loop.

    .venv/bin/python benchmarks/overhead.py [--repeats 2] [--threads 2,1] [--breakdown] [--out PATH]

Both train the packaged MiniLM for one epoch of the embedded data (minilm space with the
embedded search's settings: 704 pairs, batch 16, 44 optimiser steps) with the same pairs,
batches, tokenization, loss, optimizer and schedule, on the same number of torch threads and
the same memory allocator (search/ray_session.allocator_env).
Order: plain, (ours, plain) × repeats (default 2); every run is a fresh process (plain runs are
subprocesses, ours gets a fresh Ray worker), Ray is shut down while a plain run trains, and
the ratio is median(ours) / median(plain), so drift on a shared machine does not bias it;
step_time_ratio_paired (median of each ours run over its two plain neighbours) is less noisy still.
--breakdown adds two layers between them, each followed by a plain run: the plain loop as a Ray
task (Ray's processes and a Ray worker, nothing else) and our loop under a bare TorchTrainer (no Tune).

Each thread count is measured separately; the default is all cores, then one core fewer. With
every core running a torch thread, Ray's other processes take their CPU time from the OpenMP team,
and the whole team waits at its next barrier while one thread is away (docs/benchmarks.md,
Diagnostics). With one core left free that work lands there: the second figure is the cost of the
orchestration itself, the first what a fully subscribed CPU pays for running Ray beside it. Ray starts its workers at nice 15,
below its own daemons, which made every such wake-up preempt a trainer at once; the Ray that
search.run starts runs them at nice 0 (search/ray_session.LOCAL_ENV). Figures: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (RESULTS, cpu_trial_setup, embedded_config, machine, measured, median, print_table,
                    start_local_ray, write_json)


def plain_run(config: dict) -> dict:
    """trainables.loop's epoch (the same train_step) with Ray, the meter, checkpointing and evaluation
    taken out."""
    import torch

    from trainables.config import TrainConfig
    from trainables.data import steps_per_epoch, worker_batches
    from common import encode_pairs, id_pair_lengths
    from trainables.optim import build_optimizer, build_scheduler
    from trainables.precision import autocast_dtype
    from trainables.step import StepSettings, train_step

    cfg = TrainConfig.from_dict(config)
    device = torch.device("cpu")
    data, pairs, _, tokenizer, model = cpu_trial_setup(cfg)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=steps_per_epoch(len(pairs), cfg.batch_size) * cfg.epochs)
    settings = StepSettings(cfg.batch_size, 1, cfg.grad_clip, autocast_dtype(cfg.bf16, device))
    lengths = id_pair_lengths(pairs, data) if cfg.group_by_length else None
    batches = worker_batches(len(pairs), 0, cfg.seed, cfg.batch_size, cfg.grad_accum, 0, 1, lengths)
    model.train()
    loss_sum = torch.zeros(())
    usage = resource.getrusage(resource.RUSAGE_SELF)  # page faults and kernel time of the loop alone
    started = time.perf_counter()
    for micro_batches in batches:  # the loop's own step, on the same tokenised micro-batches
        encoded = [encode_pairs([pairs[i] for i in micro], data, tokenizer, cfg.max_length, device) for micro in micro_batches]
        loss_sum += train_step(model, encoded, optimizer, scheduler, settings)
    train_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"steps": len(batches), "train_s": train_s, "step_time_s": train_s / len(batches),
            "page_faults_per_step": (after.ru_minflt - usage.ru_minflt) / len(batches),
            "kernel_cpu_s": after.ru_stime - usage.ru_stime,
            "train_loss": loss_sum.item() / len(batches), "torch_threads": torch.get_num_threads()}


PLAIN_CHILD = "--plain-child"  # the flag that makes this script the plain loop's child process


def plain_in_subprocess(config: dict, env: dict | None = None) -> dict:
    # A fresh process each time, like the trial's fresh Ray worker: no warm caches on either side,
    # and by default the memory allocator a worker of search.run's Ray gets, so the ratio is Ray's
    # cost alone (env: the child's whole environment instead).
    from search.ray_session import allocator_env
    done = subprocess.run([sys.executable, __file__, PLAIN_CHILD, json.dumps(config)],
                          capture_output=True, text=True, check=False, env=env or {**os.environ, **allocator_env()})
    if done.returncode:
        raise SystemExit(f"plain run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours_run(base: dict, threads: int, storage: Path) -> dict:
    """One Tune trial of search.trainable, timed from Ray's start to the end of Tuner.fit()."""
    import ray
    from ray import tune

    from search.resources import plan
    from search.trainable import trainable

    # One CPU trial at a time with one worker holding `threads` cores: what search.run plans
    # on a `threads`-core machine.
    resources = plan(threads, 0, 0, 1, 1)
    started = time.perf_counter()
    start_local_ray()
    try:
        ray_up = time.perf_counter()
        tuner = tune.Tuner(
            trainable(base, resources, str(storage / "trials"), max_failures=0),
            tune_config=tune.TuneConfig(num_samples=1),
            run_config=tune.RunConfig(name="overhead", storage_path=str(storage / "tune"), verbose=0))
        results = tuner.fit()
        wall_s = time.perf_counter() - started
        result = results[0]
        if result.error:
            raise SystemExit(f"the trial failed: {result.error}")
        metrics = result.metrics
    finally:
        ray.shutdown()
    return {"steps": metrics["step"], "train_s": metrics["train_s"], "eval_s": metrics["eval_s"],
            "step_time_s": metrics["step_time_s"], "train_loss": metrics["train_loss"],
            "ray_init_s": ray_up - started, "wall_s": wall_s,
            "startup_s": wall_s - metrics["train_s"] - metrics["eval_s"],
            "cpus_per_worker": resources.cpus_per_worker}


def task_run(config: dict) -> dict:
    """The plain loop as a Ray task holding the same CPUs: Ray's processes and worker, no Train."""
    import ray
    start_local_ray()
    try:
        return ray.get(ray.remote(num_cpus=config["num_threads"])(plain_run).remote(config))
    finally:
        ray.shutdown()


def train_run(config: dict, storage: Path) -> dict:
    """Our loop under a bare Ray Train TorchTrainer (1 worker), no Tune."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from trainables.loop import train_loop_per_worker
    start_local_ray()
    try:
        result = TorchTrainer(train_loop_per_worker, train_loop_config=config,
                              scaling_config=ScalingConfig(num_workers=1,
                                                           resources_per_worker={"CPU": config["num_threads"]}),
                              run_config=RunConfig(name="overhead-train", storage_path=str(storage))).fit()
    finally:
        ray.shutdown()
    if result.error:
        raise SystemExit(f"the Train run failed: {result.error}")
    return {k: result.metrics[k] for k in ("step_time_s", "train_s", "eval_s", "train_loss")}


def measure(base: dict, threads: int, repeats: int, breakdown: bool, tmp: str) -> tuple[list[dict], dict]:
    """Runs at one torch thread count, interleaved: plain, (layer, plain) × repeats."""
    plain_config = {**base, "num_threads": threads}
    layers = ["task", "train", "ours"] if breakdown else ["ours"]
    order = ["plain"] + [kind for _ in range(repeats) for layer in layers for kind in (layer, "plain")]
    start = {"plain": lambda: plain_in_subprocess(plain_config),
             "task": lambda: task_run(plain_config),
             "train": lambda: train_run(plain_config, Path(tempfile.mkdtemp(dir=tmp))),
             "ours": lambda: ours_run(base, threads, Path(tempfile.mkdtemp(dir=tmp)))}
    runs = []
    for index, kind in enumerate(order):
        print(f"[{threads} threads, {index + 1}/{len(order)}] {kind} ...", file=sys.stderr, flush=True)
        run = measured(start[kind])
        runs.append({"kind": kind, "threads": threads, **run})
        print(f"    step {run['step_time_s'] * 1e3:.1f} ms, loss {run['train_loss']:.4f}, "
              f"other processes {run['other_cores']:.2f} cores", file=sys.stderr)
    plain = [r for r in runs if r["kind"] == "plain"]
    ours = [r for r in runs if r["kind"] == "ours"]
    plain_step, ours_step = median([r["step_time_s"] for r in plain]), median([r["step_time_s"] for r in ours])
    figures = {
        "step_time_ratio": ours_step / plain_step,
        # Noise on a shared machine only ever adds time, so the fastest runs are a second estimate.
        "step_time_ratio_min": min(r["step_time_s"] for r in ours) / min(r["step_time_s"] for r in plain),
        "plain_step_time_s": plain_step, "ours_step_time_s": ours_step,
        "startup_s": median([r["startup_s"] for r in ours]), "ours_wall_s": median([r["wall_s"] for r in ours]),
        "ours_train_s": median([r["train_s"] for r in ours]), "ours_eval_s": median([r["eval_s"] for r in ours]),
        "ray_init_s": median([r["ray_init_s"] for r in ours]), "steps": ours[0]["steps"], "threads": threads,
        "max_other_cores": max(r["other_cores"] for r in runs),
        "order": " → ".join(r["kind"] for r in runs) + "; ratio = median(ours) / median(plain)",
    }
    figures["step_time_ratios_paired"] = paired_ratios(runs, "ours")
    figures["step_time_ratio_paired"] = median(figures["step_time_ratios_paired"])
    for layer in ("task", "train"):
        times = [r["step_time_s"] for r in runs if r["kind"] == layer]
        if times:
            figures[f"{layer}_step_time_ratio"] = median(times) / plain_step
    return runs, figures


def paired_ratios(runs: list[dict], layer: str) -> list[float]:
    """Each `layer` run over the mean of the plain runs just before and after it. A shared machine's
    speed drifts over minutes, so a run compared with its own neighbours says more than medians taken
    across the whole benchmark."""
    return [run["step_time_s"] / ((before["step_time_s"] + after["step_time_s"]) / 2)
            for before, run, after in zip(runs, runs[1:], runs[2:])
            if run["kind"] == layer and before["kind"] == after["kind"] == "plain"]


def table_rows(runs: list[dict], f: dict) -> list[tuple[str, str]]:
    t = f["threads"]
    return [
        *[(f"{t} threads: {r['kind']} run {i + 1} step time",
           f"{r['step_time_s'] * 1e3:8.1f} ms  (train {r['train_s']:.1f} s, loss {r['train_loss']:.4f}, "
           f"other processes {r['other_cores']:.2f} cores, steal {r['steal_cores']:.2f})") for i, r in enumerate(runs)],
        (f"{t} threads: plain / ours step time (median)",
         f"{f['plain_step_time_s'] * 1e3:8.1f} ms / {f['ours_step_time_s'] * 1e3:.1f} ms"),
        (f"{t} threads: step_time_ratio (ours/plain)", f"{f['step_time_ratio']:8.3f}   goal <= 1.03, must be <= 1.05: "
                                                       f"{'PASS' if f['step_time_ratio'] <= 1.05 else 'FAIL'}"),
        (f"{t} threads: step_time_ratio_min (fastest/fastest)", f"{f['step_time_ratio_min']:8.3f}"),
        (f"{t} threads: step_time_ratio_paired (each ours / its neighbours)",
         f"{f['step_time_ratio_paired']:8.3f}   ({', '.join(f'{r:.3f}' for r in f['step_time_ratios_paired'])})"),
        *[(f"{t} threads: {layer}_step_time_ratio ({what})", f"{f[f'{layer}_step_time_ratio']:8.3f}")
          for layer, what in (("task", "plain loop as a Ray task"), ("train", "our loop, TorchTrainer, no Tune"))
          if f"{layer}_step_time_ratio" in f],
        (f"{t} threads: ours wall (ray.init + fit)", f"{f['ours_wall_s']:8.1f} s  (ray.init {f['ray_init_s']:.1f} s, "
                                                     f"train {f['ours_train_s']:.1f} s, eval {f['ours_eval_s']:.1f} s)"),
        (f"{t} threads: startup_s (wall - train - eval)", f"{f['startup_s']:8.1f} s   (Ray, Tune, Train start, "
                                                          f"model load, checkpoint, teardown)"),
    ]


def main() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="(ours, plain) pairs after the first plain run")
    parser.add_argument("--threads", default=None,
                        help=f"comma-separated torch thread counts, each measured in both arms (default "
                             f"{cores},{max(cores - 1, 1)}: all cores, then one core left to Ray's own processes)")
    parser.add_argument("--batch-size", type=int, default=16, help="global batch (704 pairs // 16 = 44 steps)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the plain loop as a Ray task and our loop under a bare TorchTrainer "
                             "(no Tune), to see which layer costs what")
    parser.add_argument("--out", type=Path, default=RESULTS / "overhead.json")
    parser.add_argument(PLAIN_CHILD, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        print(json.dumps(plain_run(json.loads(args.plain_child))))
        return
    thread_counts = ([int(t) for t in args.threads.split(",")] if args.threads
                     else sorted({cores, max(cores - 1, 1)}, reverse=True))

    # Every TrainConfig key of the trial except num_threads (the trainable sets it from the plan).
    base = embedded_config(epochs=1, batch_size=args.batch_size)
    runs, per_threads = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        for threads in thread_counts:
            threads_runs, per_threads[threads] = measure(base, threads, args.repeats, args.breakdown, tmp)
            runs += threads_runs
    headline = per_threads[thread_counts[0]]
    figures = {**headline, "goal": "step_time_ratio <= 1.03 (must be <= 1.05)",
               "by_threads": {str(t): f for t, f in per_threads.items()}}
    rows = [row for t in thread_counts for row in table_rows([r for r in runs if r["threads"] == t], per_threads[t])]
    rows.append(("step_time_ratio (headline: the first thread count)", f"{headline['step_time_ratio']:8.3f}"))
    print_table(f"overhead: packaged MiniLM, embedded data, {headline['steps']} steps, batch {args.batch_size}, "
                f"{cores} cores, torch threads {', '.join(map(str, thread_counts))}", rows)
    write_json(args.out, {"benchmark": "overhead", "machine": machine(), "config": base,
                          "figures": figures, "runs": runs})


if __name__ == "__main__":
    main()
