"""glibc's malloc vs the jemalloc search.run's workers get (search/ray_session.allocator_env).

    .venv/bin/python benchmarks/allocator.py [--rounds 3] [--batch-sizes 16,8] [--threads 2] [--out PATH]

The plain loop of overhead.py (packaged MiniLM, one epoch of the embedded data), once per
allocator and batch size per round, each in a fresh process, interleaved. Per run: step time,
minor page faults per step and kernel CPU seconds, both counted around the training loop alone.
Figures per batch size: the medians and `step_time_ratio` = jemalloc / glibc. Without Ray, so it
shows the allocator's effect on a step; what it does under Ray is in vs_sentence_transformers.py.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from common import RESULTS, embedded_config, machine, measured, median, print_table, write_json
from overhead import plain_in_subprocess

PRELOAD_KEYS = ("LD_PRELOAD", "MALLOC_CONF")


def environments() -> dict[str, dict]:
    """The child's whole environment per allocator."""
    from search.ray_session import allocator_env
    glibc = {k: v for k, v in os.environ.items() if k not in PRELOAD_KEYS}
    jemalloc = {**glibc, **allocator_env(glibc)}
    if jemalloc == glibc:
        raise SystemExit("allocator.py: Ray's wheel has no ray/core/libjemalloc.so here; nothing to compare")
    return {"glibc": glibc, "jemalloc": jemalloc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per allocator and batch size")
    parser.add_argument("--batch-sizes", default="16,8", help="comma-separated (16: overhead.py's, 8: ST's)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS / "allocator.json")
    args = parser.parse_args()
    envs = environments()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    runs = []
    for round_index in range(args.rounds):
        for batch_size in batch_sizes:
            config = embedded_config(epochs=1, batch_size=batch_size, num_threads=args.threads)
            for name, env in envs.items():
                run = measured(lambda: plain_in_subprocess(config, env))
                runs.append({"allocator": name, "batch_size": batch_size, "round": round_index, **run})

    figures, rows = {}, []
    for batch_size in batch_sizes:
        per = {}
        for name in envs:
            mine = [r for r in runs if r["allocator"] == name and r["batch_size"] == batch_size]
            per[name] = {key: median([r[key] for r in mine])
                         for key in ("step_time_s", "page_faults_per_step", "kernel_cpu_s")}
            each = ", ".join(f"{r['step_time_s'] * 1e3:.1f}" for r in mine)
            rows.append((f"batch {batch_size}, {name}: step / page faults per step / kernel CPU",
                         f"{per[name]['step_time_s'] * 1e3:7.1f} ms  {per[name]['page_faults_per_step']:8.0f}  "
                         f"{per[name]['kernel_cpu_s']:5.2f} s  (each run: {each} ms)"))
        ratio = per["jemalloc"]["step_time_s"] / per["glibc"]["step_time_s"]
        figures[str(batch_size)] = {**per, "step_time_ratio": ratio}
        rows.append((f"batch {batch_size}: step_time_ratio (jemalloc / glibc)", f"{ratio:7.3f}"))
    print_table(f"allocator: plain loop, packaged MiniLM, embedded data, {args.threads} threads, "
                f"{args.rounds} rounds (medians)", rows)
    write_json(args.out, {"benchmark": "allocator", "machine": machine(), "environments":
                          {name: {k: env.get(k) for k in PRELOAD_KEYS} for name, env in envs.items()},
                          "figures": figures, "runs": runs})


if __name__ == "__main__":
    main()
