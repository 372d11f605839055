"""Overhead of our trainable (Ray Train inside one Ray Tune trial) over a plain PyTorch loop.

    .venv/bin/python benchmarks/overhead.py [--repeats 2] [--threads 2] [--out PATH]

Both train the packaged MiniLM for one epoch of the embedded data (minilm space with the
embedded search's settings: 704 pairs, batch 16, 44 optimiser steps) with the same pairs,
batches, tokenization, loss, optimizer and schedule, on the same number of torch threads.
Order: plain, (ours, plain) × repeats (default 2); every run is a fresh process (plain runs are
subprocesses, ours gets a fresh Ray worker), Ray is shut down while a plain run trains, and
the ratio is median(ours) / median(plain), so drift on a shared machine does not bias it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import EMBEDDED, RESULTS, machine, measured, median, print_table, start_local_ray, write_json

SEARCHED_DEFAULTS = dict(optimizer="adamw", lr=2e-5, weight_decay=0.01, scheduler="linear", warmup_ratio=0.1)


def base_config(args) -> dict:
    """Every TrainConfig key of the trial except num_threads (the trainable sets it from the plan)."""
    from search.run import EMBEDDED_SETTINGS
    from spaces.minilm import SPACE
    from trainables.models import PACKAGED_MINILM
    return {**SPACE.fixed, **EMBEDDED_SETTINGS, **SEARCHED_DEFAULTS, "model": PACKAGED_MINILM,
            "data_dir": str(EMBEDDED), "epochs": 1, "batch_size": args.batch_size}


def plain_run(config: dict) -> dict:
    """trainables.loop's epoch with Ray, the meter, checkpointing and evaluation taken out."""
    import torch
    import torch.nn.functional as F

    from trainables.config import TrainConfig
    from trainables.data import steps_per_epoch, worker_batches
    from trainables.loop import encode, load_trial_data, pair_lengths, quiet_libraries
    from trainables.models import load_reranker, native_dir, require
    from trainables.optim import build_optimizer, build_scheduler

    cfg = TrainConfig.from_dict(config)
    torch.set_num_threads(cfg.num_threads)
    quiet_libraries()
    device = torch.device("cpu")
    data, pairs, _ = load_trial_data(cfg)
    torch.manual_seed(cfg.seed)  # the same classifier head as the trial's
    tokenizer, model = load_reranker(native_dir(require(cfg.model), Path(tempfile.gettempdir()) / "rerank-search"))
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=steps_per_epoch(len(pairs), cfg.batch_size) * cfg.epochs)
    lengths = pair_lengths(pairs, data) if cfg.group_by_length else None
    batches = worker_batches(len(pairs), 0, cfg.seed, cfg.batch_size, cfg.grad_accum, 0, 1, lengths)
    model.train()
    loss_sum = torch.zeros(())
    started = time.perf_counter()
    for micro_batches in batches:
        for micro in micro_batches:
            inputs, labels = encode([pairs[i] for i in micro], data, tokenizer, cfg.max_length, device)
            logits = model(**inputs).logits.view(-1).float()
            loss = F.binary_cross_entropy_with_logits(logits, labels) / len(micro_batches)
            loss.backward()
            loss_sum += loss.detach()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    train_s = time.perf_counter() - started
    return {"steps": len(batches), "train_s": train_s, "step_time_s": train_s / len(batches),
            "train_loss": loss_sum.item() / len(batches), "torch_threads": torch.get_num_threads()}


def plain_in_subprocess(config: dict) -> dict:
    # A fresh process each time, like the trial's fresh Ray worker: no warm caches on either side.
    done = subprocess.run([sys.executable, __file__, "--plain-child", json.dumps(config)],
                          capture_output=True, text=True, check=False)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="(ours, plain) pairs after the first plain run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in both (the worker's CPUs)")
    parser.add_argument("--batch-size", type=int, default=16, help="global batch (704 pairs // 16 = 44 steps)")
    parser.add_argument("--out", type=Path, default=RESULTS / "overhead.json")
    parser.add_argument("--plain-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        print(json.dumps(plain_run(json.loads(args.plain_child))))
        return

    base = base_config(args)
    plain_config = {**base, "num_threads": args.threads}
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        order = ["plain"] + ["ours", "plain"] * args.repeats
        for index, kind in enumerate(order):
            print(f"[{index + 1}/{len(order)}] {kind} ...", file=sys.stderr, flush=True)
            run = measured(lambda: plain_in_subprocess(plain_config) if kind == "plain" else
                           ours_run(base, args.threads, Path(tempfile.mkdtemp(dir=tmp))))
            runs.append({"kind": kind, **run})
            print(f"    step {run['step_time_s'] * 1e3:.1f} ms, loss {run['train_loss']:.4f}, "
                  f"other processes {run['other_cores']:.2f} cores", file=sys.stderr)

    plain = [r for r in runs if r["kind"] == "plain"]
    ours = [r for r in runs if r["kind"] == "ours"]
    plain_step, ours_step = median([r["step_time_s"] for r in plain]), median([r["step_time_s"] for r in ours])
    ratio = ours_step / plain_step
    # Noise on a shared machine only ever adds time, so the fastest runs are a second estimate.
    ratio_min = min(r["step_time_s"] for r in ours) / min(r["step_time_s"] for r in plain)
    startup = median([r["startup_s"] for r in ours])
    figures = {
        "step_time_ratio": ratio, "step_time_ratio_min": ratio_min,
        "plain_step_time_s": plain_step, "ours_step_time_s": ours_step,
        "startup_s": startup, "ours_wall_s": median([r["wall_s"] for r in ours]),
        "ours_train_s": median([r["train_s"] for r in ours]), "ours_eval_s": median([r["eval_s"] for r in ours]),
        "ray_init_s": median([r["ray_init_s"] for r in ours]),
        "steps": ours[0]["steps"], "threads": args.threads,
        "max_other_cores": max(r["other_cores"] for r in runs),
        "order": " → ".join(r["kind"] for r in runs) + "; ratio = median(ours) / median(plain)",
        "goal": "step_time_ratio <= 1.03 (must be <= 1.05)",
    }
    print_table(f"overhead: packaged MiniLM, embedded data, {figures['steps']} steps, batch {args.batch_size}, "
                f"{args.threads} torch threads; order {figures['order']}", [
        *[(f"{r['kind']} run {i + 1} step time", f"{r['step_time_s'] * 1e3:8.1f} ms  (train {r['train_s']:.1f} s, "
           f"loss {r['train_loss']:.4f}, other processes {r['other_cores']:.2f} cores, steal "
           f"{r['steal_cores']:.2f})") for i, r in enumerate(runs)],
        ("plain step time (median)", f"{plain_step * 1e3:8.1f} ms"),
        ("ours step time (median)", f"{ours_step * 1e3:8.1f} ms"),
        ("step_time_ratio (ours/plain)", f"{ratio:8.3f}   goal <= 1.03, must be <= 1.05: "
                                         f"{'PASS' if ratio <= 1.05 else 'FAIL'}"),
        ("step_time_ratio_min (fastest/fastest)", f"{ratio_min:8.3f}"),
        ("ours wall (ray.init + fit)", f"{figures['ours_wall_s']:8.1f} s"),
        ("  of which ray.init", f"{figures['ray_init_s']:8.1f} s"),
        ("  of which train_s + eval_s", f"{figures['ours_train_s']:8.1f} s + {figures['ours_eval_s']:.1f} s"),
        ("startup_s (wall - train - eval)", f"{startup:8.1f} s   (Ray, Tune, Train start, model load, "
                                            f"checkpoint, teardown)"),
    ])
    write_json(args.out, {"benchmark": "overhead", "machine": machine(), "config": plain_config,
                          "figures": figures, "runs": runs})


if __name__ == "__main__":
    main()
