"""Shared by the benchmark scripts: environment, machine description, a local Ray, JSON output."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EMBEDDED = ROOT / "data" / "embedded"
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

# The same environment search.run gives every Ray process; set before torch or Ray is imported
# so a plain loop in this process runs under the same settings as a Ray worker.
BENCH_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
             "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_V2_ENABLED": "1", "HF_HUB_OFFLINE": "1",
             "RAY_AIR_NEW_OUTPUT": "0", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
os.environ.update(BENCH_ENV)


# TrainConfig's defaults for the keys a search tunes, written out so every benchmark states them.
SEARCHED_DEFAULTS = dict(optimizer="adamw", lr=2e-5, weight_decay=0.01, scheduler="linear", warmup_ratio=0.1)


def embedded_config(**overrides) -> dict:
    """A minilm trial config as the embedded default search builds it (the space's fixed settings,
    then search.run's embedded settings, the packaged MiniLM and the embedded data), with
    SEARCHED_DEFAULTS for the searched keys and `overrides` on top."""
    from search.run import EMBEDDED_SETTINGS
    from spaces.minilm import SPACE
    from trainables.models import PACKAGED_MINILM
    return {**SPACE.fixed, **EMBEDDED_SETTINGS, **SEARCHED_DEFAULTS, "model": PACKAGED_MINILM,
            "data_dir": str(EMBEDDED), **overrides}


def cpu_trial_setup(cfg):
    """What trainables.loop does before its first step, here in this process on the CPU: torch
    threads, the trial's data, pairs and dev queries, and the model with its head seeded alike.
    Returns (data, pairs, dev_qids, tokenizer, model)."""
    import torch

    from trainables.loop import load_trial_data, quiet_libraries
    from trainables.models import load_reranker, loadable_dir
    torch.set_num_threads(cfg.num_threads)
    quiet_libraries()
    trial = load_trial_data(cfg)
    data, pairs, dev_qids = trial.eval, trial.id_pairs(), trial.dev_qids
    torch.manual_seed(cfg.seed)  # the same classifier head as the trial's
    tokenizer, model = load_reranker(loadable_dir(cfg.model))
    return data, pairs, dev_qids, tokenizer, model


def encode_pairs(pairs, data, tokenizer, max_length: int, device):
    """trainables.loop.encode of id pairs, their texts from `data` (the trial's view)."""
    from trainables.loop import encode
    texts = ([data.queries[p.qid] for p in pairs], [data.collection[p.pid] for p in pairs], [p.label for p in pairs])
    return encode(texts, tokenizer, max_length, device)


def id_pair_lengths(pairs, data) -> list[int]:
    return [len(data.queries[p.qid]) + len(data.collection[p.pid]) for p in pairs]


def machine() -> dict:
    """What the figures were measured on."""
    import torch
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": cpu, "cores": cores, "python": platform.python_version(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for name in ("ray", "transformers", "sentence_transformers"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            pass
    return info


def start_local_ray(retries: int = 5, wait_s: float = 60.0):
    """A local Ray exactly as search.run starts it; waits and retries while another engineer's
    Ray instance makes Ray refuse to pick one ("Found multiple active Ray instances")."""
    from search.run import start_ray
    for attempt in range(retries):
        try:
            return start_ray(None)
        except Exception as err:  # UsageError wraps Ray's ConnectionError
            if "multiple active Ray instances" not in str(err) or attempt == retries - 1:
                raise
            print(f"another Ray instance is running; retrying in {wait_s:.0f} s", file=sys.stderr)
            time.sleep(wait_s)


class OtherLoad:
    """CPU cores that processes outside this benchmark's process tree used while it ran, and the
    host's steal: on a shared machine a busy neighbour slows a run, so every run says how busy
    the machine was. Ray's processes (gcs, raylet, workers) descend from the driver: they count as ours."""

    def __init__(self, interval_s: float = 1.0):
        import psutil
        self.psutil, self.interval_s, self.me = psutil, interval_s, psutil.Process()
        self.other_s = self.steal_s = 0.0
        self._stop = threading.Event()

    def _ours(self) -> dict:
        times = {}
        for proc in [self.me] + self.me.children(recursive=True):
            try:
                cpu = proc.cpu_times()
                times[proc.pid] = cpu.user + cpu.system
            except self.psutil.Error:
                pass  # ended between listing and reading
        return times

    def _machine(self):
        cpu = self.psutil.cpu_times()
        return cpu.user + cpu.nice + cpu.system + cpu.irq + cpu.softirq, cpu.steal

    def _run(self) -> None:
        busy, steal = self._machine()
        ours = self._ours()
        while not self._stop.wait(self.interval_s):
            now_busy, now_steal = self._machine()
            now_ours = self._ours()
            used_by_us = sum(t - ours.get(pid, 0.0) for pid, t in now_ours.items())
            self.other_s += max(0.0, now_busy - busy - used_by_us)
            self.steal_s += now_steal - steal
            busy, steal, ours = now_busy, now_steal, now_ours

    def __enter__(self) -> "OtherLoad":
        self.started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.figures = {"other_cores": self.other_s / elapsed, "steal_cores": self.steal_s / elapsed}


def wait_for_quiet(limit_cores: float = 0.05, window_s: float = 5.0, max_wait_s: float = 900.0) -> None:
    """Wait (within reason) until other processes use under limit_cores over window_s."""
    deadline = time.monotonic() + max_wait_s
    while True:
        with OtherLoad(interval_s=window_s / 5) as load:
            time.sleep(window_s)
        if load.figures["other_cores"] < limit_cores:
            return
        if time.monotonic() > deadline:
            print(f"machine still busy ({load.figures['other_cores']:.2f} cores); measuring anyway", file=sys.stderr)
            return
        print(f"machine busy ({load.figures['other_cores']:.2f} cores used by other processes); waiting",
              file=sys.stderr, flush=True)
        time.sleep(20)


def measured(run, limit_cores: float = 0.1, attempts: int = 3) -> dict:
    """run() on a quiet machine, with the load beside it. A run during which other processes took
    more than limit_cores is repeated, and the disturbed attempts are kept under "disturbed_attempts":
    with two torch threads on two cores, a neighbour using 0.15 of a core was seen to slow a step
    1.8-fold (OpenMP threads wait for each other at every parallel region)."""
    disturbed = []
    for attempt in range(attempts):
        wait_for_quiet()
        with OtherLoad() as load:
            result = dict(run())
        result.update(load.figures)
        if load.figures["other_cores"] <= limit_cores or attempt == attempts - 1:
            result["disturbed"] = load.figures["other_cores"] > limit_cores
            result["disturbed_attempts"] = disturbed
            return result
        print(f"run disturbed ({load.figures['other_cores']:.2f} cores used by other processes); repeating it",
              file=sys.stderr, flush=True)
        disturbed.append({k: v for k, v in result.items() if not isinstance(v, (dict, list))})


def chosen_variants(text: str, known) -> list[str]:
    """A --variants comma list, checked against the script's known variants."""
    names = [v for v in text.split(",") if v]
    unknown = [v for v in names if v not in known]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_json(path: Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}\n" + "-" * (width + 20))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
