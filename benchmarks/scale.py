"""MS MARCO-size data on one machine: what a larger collection adds to a search's wall time and memory.

    .venv/bin/python benchmarks/scale.py                       # 3M passages (fits 24 GB), ~15 min on 2 cores
    .venv/bin/python benchmarks/scale.py --passages 8800000    # the MS MARCO collection's size

Generates (once, into --work) an MS MARCO-shaped directory: N synthetic passages of MS MARCO's
length (~56 words), N/17 training queries, N/3 id triples, and 43 judged evaluation queries with a
top-1000 run. Then runs, side by side, the same smoke search on the embedded data and on that
directory (2 workers per trial, --max-triples 800; the large one starts cold, preparation
included), sampling system-wide memory above idle and every Ray Train worker's private (USS) and
proportional (PSS) memory, and the search's own processes' memory summed proportionally:
anonymous + shared (what only they can free) apart from the mapped file pages of the prepared data
(page cache, shared by every process on the node and reclaimable). Also times a warm start
(prepared already) and, in its own process, the TSV readers (`RetrievalData.load` of the directory, which a trial did before the prepared form).
Goal: the large corpus adds < 700 MB of peak memory and < 30 s of wall time, preparation included;
a worker starts in < 10 s once the data is prepared.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import RESULTS, ROOT, machine, write_json

import numpy as np
import psutil

SEARCH = ["--space", "minilm", "--smoke-test", "--workers-per-trial", "2", "--trials", "1", "--epochs", "1",
          "--max-triples", "800"]
EVAL_QUERIES, RUN_DEPTH, WORDS = 43, 1000, 30_000


def generate(out: Path, passages: int, seed: int = 0) -> Path:
    """An MS MARCO-shaped directory (made once; a finished one has its DONE file)."""
    if (out / "DONE").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}{'abcdefghij'[i % 10]}" for i in range(WORDS)])
    with open(out / "collection.tsv", "w") as handle:
        for start in range(0, passages, 100_000):
            count = min(100_000, passages - start)
            lengths = rng.poisson(56, count).clip(5, 200)
            words = vocab[rng.zipf(1.3, lengths.sum()) % WORDS]
            ends = np.cumsum(lengths)
            handle.writelines(f"{start + i}\t{' '.join(words[e - n:e])}\n" for i, (n, e) in enumerate(zip(lengths, ends)))
    train_queries = max(100, passages // 17)
    with open(out / "queries.tsv", "w") as handle:
        for q in range(train_queries + EVAL_QUERIES):
            handle.write(f"{q}\t{' '.join(vocab[rng.integers(0, WORDS, rng.integers(3, 9))])}\n")
    triples = max(1000, passages // 3)
    q, pos, neg = rng.integers(0, train_queries, triples), rng.integers(0, passages, triples), \
        rng.integers(0, passages, triples)
    with open(out / "triples.train.ids.tsv", "w") as handle:
        handle.writelines(f"{a}\t{b}\t{c}\n" for a, b, c in zip(q, pos, neg))
    with open(out / "run.bm25.trec", "w") as run, open(out / "qrels.txt", "w") as qrels:
        for q in range(train_queries, train_queries + EVAL_QUERIES):
            ranked = rng.choice(passages, RUN_DEPTH, replace=False)
            run.writelines(f"{q} Q0 {p} {r} {30 - r / 100:.4f} synthetic\n" for r, p in enumerate(ranked, 1))
            qrels.write(f"{q} 0 {ranked[0]} 3\n")
            for p in ranked[1 + rng.choice(59, 8, replace=False)]:
                qrels.write(f"{q} 0 {p} {rng.integers(0, 4)}\n")
    (out / "DONE").write_text(json.dumps({"passages": passages, "train_queries": train_queries, "triples": triples}))
    return out


def system_used() -> int:
    memory = psutil.virtual_memory()
    return memory.total - memory.available


def rollup(pid: int) -> dict[str, int]:
    """A process's proportional memory by kind, in bytes (Linux smaps_rollup)."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("Pss_Anon", "Pss_Shmem", "Pss_File"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


class Sampler(threading.Thread):
    """Every 0.25 s system memory above `idle`; every second the search's own processes (the driver,
    Ray, its workers), summed proportionally: anonymous + shared memory (what only they can free) and the
    file pages they map (the prepared data in the page cache, shared and reclaimable); and each Ray
    Train worker's USS/PSS."""

    def __init__(self, idle: int):
        super().__init__(daemon=True)
        self.idle, self.peak, self.workers, self.stop = idle, 0, {}, threading.Event()
        self.root, self.tree_peak, self.file_peak = None, 0, 0

    def run(self):
        ticks = 0
        while not self.stop.is_set():
            self.peak = max(self.peak, system_used() - self.idle)
            if self.root and ticks % 4 == 0:  # walking the process tree costs CPU the search shares
                self.sample_tree()
            ticks += 1
            self.stop.wait(0.25)

    def sample_tree(self):
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        private = mapped = 0
        for proc in procs:
            try:
                fields = rollup(proc.pid)
                title = " ".join(proc.cmdline())
                info = proc.memory_full_info() if "RayTrainWorker" in title else None
            except (OSError, psutil.Error):
                continue
            private += fields.get("Pss_Anon", 0) + fields.get("Pss_Shmem", 0)
            mapped += fields.get("Pss_File", 0)
            if info:
                uss, pss = self.workers.get(proc.pid, (0, 0))
                self.workers[proc.pid] = (max(uss, info.uss), max(pss, info.pss))
        self.tree_peak, self.file_peak = max(self.tree_peak, private), max(self.file_peak, mapped)


def run_search(name: str, extra: list[str], storage: Path) -> dict:
    """One search as a user runs it, with its wall time, memory and workers' start-up lines."""
    shutil.rmtree(storage, ignore_errors=True) if name != "large, warm" else None
    time.sleep(3)
    sampler, load = Sampler(system_used()), os.getloadavg()[0]  # other work skews wall time and system memory
    sampler.start()
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "search.run", *SEARCH, *extra, "--storage", str(storage)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    sampler.root = psutil.Process(child.pid)
    _, stderr = child.communicate()
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"{name}: search.run failed:\n{stderr[-3000:]}")
    ready = [(float(a), float(b)) for a, b in
             re.findall(r"worker \d+/\d+: data ready in ([\d.]+) s, first step after ([\d.]+) s", stderr)]
    prepared = re.search(r"prepared in ([\d.]+) s", stderr)
    return {"arm": name, "load_average_at_start": round(load, 2), "wall_s": round(wall, 1), "peak_above_idle_mb": round(sampler.peak / 2**20),
            "search_private_peak_mb": round(sampler.tree_peak / 2**20),
            "search_mapped_files_peak_mb": round(sampler.file_peak / 2**20),
            "worker_uss_mb": [round(u / 2**20) for u, _ in sampler.workers.values()],
            "worker_pss_mb": [round(p / 2**20) for _, p in sampler.workers.values()],
            "worker_data_ready_s": [a for a, _ in ready], "worker_first_step_s": [b for _, b in ready],
            "preparation_s": float(prepared.group(1)) if prepared else None}


def tsv_readers(directory: Path) -> dict:
    """The TSV readers on the whole directory in a process of their own: time and peak RSS."""
    code = ("import resource, sys, time; t = time.perf_counter(); from trainables.data import RetrievalData; "
            "d = RetrievalData.load(sys.argv[1]); print(time.perf_counter() - t, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code, str(directory)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        return {"arm": "TSV readers", "error": done.stderr.strip()[-300:]}
    seconds, rss_kb = done.stdout.split()
    return {"arm": "TSV readers (one process; a trial's driver and every worker each did this)",
            "wall_s": round(float(seconds), 1), "peak_rss_mb": round(int(rss_kb) / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=3_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rerank-scale"))
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args()
    started = time.perf_counter()
    directory = generate(args.work / f"msmarco-shaped-{args.passages}", args.passages)
    generated_s = time.perf_counter() - started
    size_mb = sum(p.stat().st_size for p in directory.iterdir()) / 2**20
    arms = [run_search("embedded", [], args.work / "storage-embedded"),
            run_search("large, cold", ["--data", str(directory)], args.work / "storage-large"),
            run_search("large, warm", ["--data", str(directory)], args.work / "storage-large"),
            tsv_readers(directory)]
    embedded, cold, warm = arms[:3]
    verdict = {"added_peak_mb": cold["peak_above_idle_mb"] - embedded["peak_above_idle_mb"],
               "added_search_private_peak_mb": cold["search_private_peak_mb"] - embedded["search_private_peak_mb"],
               "added_wall_s": round(cold["wall_s"] - embedded["wall_s"], 1),
               "warm_worker_first_step_max_s": max(warm["worker_first_step_s"], default=None)}
    verdict["goals_met"] = (verdict["added_peak_mb"] < 700 and verdict["added_wall_s"] < 30
                            and (verdict["warm_worker_first_step_max_s"] or 99) < 10)
    result = {"command": " ".join(["python -m search.run", *SEARCH]), "passages": args.passages,
              "data_mb": round(size_mb), "generated_s": round(generated_s, 1), "arms": arms, "verdict": verdict,
              "machine": machine()}
    for arm in arms:
        print(json.dumps(arm))
    print(json.dumps(verdict))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
