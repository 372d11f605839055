"""Where a fully subscribed CPU trial loses time: a scheduler trace of its training threads.

    .venv/bin/python benchmarks/contention.py [--rounds 2] [--threads 2] [--window 4] [--out PATH]

Needs Linux `perf` allowed to record scheduler tracepoints (root, or perf_event_paranoid -1 with
tracefs readable); without it the script says so and exits 2.

overhead.py times a step in our trial against a plain loop; on a machine whose speed drifts over
minutes a few percent are hard to pin down from wall times alone. This script measures the cause.
It runs overhead.py's two arms (a plain loop in a fresh process, then one Tune trial of ours; same
configuration and torch threads), `--rounds` pairs interleaved. Once the training process keeps
most of its threads' cores busy, `perf sched record` traces every context switch on the machine
for `--window` seconds. From the trace:

- the team: the `threads` busiest threads of the training process (torch's OpenMP threads);
- stall share: the part of the window in which at least one team thread was off its core. The
  threads meet at a barrier after every parallel region, so while one is away the others soon
  wait: a step takes about 1 / (1 - stall share) of its undisturbed time;
- preemptions a second (a team thread switched out while still runnable) and who ran instead;
- others' cores: the CPU every other thread on the machine used in the window, by process.

`explained_ratio` = (1 - plain stall share) / (1 - ours stall share), medians per arm, is the step
time ratio that the stalls alone account for; `step_time_ratio` of the same runs is printed beside
it (perf's own work loads both arms, so these step times are not overhead.py's figures).
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

from common import RESULTS, embedded_config, machine, median, print_table, write_json

TRACER_COMMS = ("perf", "perf-exec", "sleep")  # the trace's own processes: counted apart
SWITCH = re.compile(r"\s([\d.]+):\s+sched:sched_switch: prev_comm=.*? prev_pid=(\d+) prev_prio=-?\d+ "
                    r"prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+) ")


class Switch(NamedTuple):
    t: float
    prev_tid: int
    prev_runnable: bool  # switched out while it could still run: preempted
    next_tid: int
    next_comm: str


def parse_switches(lines) -> list[Switch]:
    """sched_switch events from `perf sched script` output, in time order."""
    found = (SWITCH.search(line) for line in lines)
    return [Switch(float(m[1]), int(m[2]), m[3].startswith("R"), int(m[5]), m[4]) for m in found if m]


def cpu_by_thread(switches: list[Switch]) -> dict[int, float]:
    """Seconds each thread ran between its switch-in and switch-out (tid 0: the idle task)."""
    ran, since = collections.Counter(), {}
    for s in switches:
        if s.prev_tid in since:
            ran[s.prev_tid] += s.t - since.pop(s.prev_tid)
        since[s.next_tid] = s.t
    return dict(ran)


def off_cpu_spans(switches: list[Switch], team: set[int]) -> list[tuple[float, float, bool, int]]:
    """(start, end, preempted, first thread to run instead) for every absence of a team thread."""
    away, spans = {}, []
    for s in switches:
        if s.prev_tid in team:
            away[s.prev_tid] = (s.t, s.prev_runnable, s.next_tid)
        if s.next_tid in team and s.next_tid in away:
            start, preempted, by = away.pop(s.next_tid)
            spans.append((start, s.t, preempted, by))
    return spans


def covered(spans: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total, current = 0.0, None
    for start, end in sorted(spans):
        if current and start <= current[1]:
            current = (current[0], max(current[1], end))
        else:
            total += current[1] - current[0] if current else 0.0
            current = (start, end)
    return total + (current[1] - current[0] if current else 0.0)


def analyse(switches: list[Switch], threads: dict[int, tuple[int, str]], target_pid: int, team_size: int) -> dict:
    """Team stall share, preemptions and others' CPU of one trace; threads: tid -> (pid, process name)."""
    span = switches[-1].t - switches[0].t
    ran = cpu_by_thread(switches)
    comms = {s.next_tid: s.next_comm for s in switches}

    def process(tid):  # threads that ended before the table was taken go by their own name
        return threads.get(tid, (tid, comms.get(tid, "?")))

    own = sorted((tid for tid in ran if process(tid)[0] == target_pid), key=ran.get, reverse=True)
    team = set(own[:team_size])
    spans = off_cpu_spans(switches, team)
    preempted_by = collections.Counter(process(by)[1] for _, _, preempted, by in spans if preempted)
    others, tracer = collections.Counter(), 0.0
    for tid, seconds in ran.items():
        pid, name = process(tid)
        if tid == 0 or tid in team:
            continue
        if comms.get(tid, name) in TRACER_COMMS:
            tracer += seconds
        else:
            others[name + (" (trainer)" if pid == target_pid else "")] += seconds
    return {"window_s": span, "team_cores": sum(ran[t] for t in team) / span,
            "stall_share": covered([(a, b) for a, b, _, _ in spans]) / span,
            "preemptions_per_s": sum(preempted_by.values()) / span,
            "preempted_by_per_s": {k: v / span for k, v in preempted_by.most_common(8)},
            "others_cores": sum(others.values()) / span, "tracer_cores": tracer / span,
            "others_by_process": {k: v / span for k, v in others.most_common(12)}}


def process_name(comm: str, argv: list[str]) -> str:
    """A Python process goes by its script (Ray's log monitor, autoscaler monitor, the driver)."""
    scripts = [Path(arg).name for arg in argv[1:3] if arg.endswith(".py")]
    return scripts[0] if comm.startswith("python") and scripts else comm


def thread_table() -> dict[int, tuple[int, str]]:
    """tid -> (pid, process name) for every thread alive now."""
    table = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            name = process_name(Path(f"/proc/{pid}/comm").read_text().strip(), argv)
            table.update({int(tid): (int(pid), name) for tid in os.listdir(f"/proc/{pid}/task")})
        except OSError:
            pass  # ended meanwhile
    return table


def training_process(kind: str):
    """The process that trains: overhead.py's plain child, or our trial's Ray Train worker."""
    import psutil
    from overhead import PLAIN_CHILD
    for proc in psutil.process_iter(["name", "cmdline"]):
        name, argv = proc.info["name"] or "", proc.info["cmdline"] or []
        if (kind == "plain" and PLAIN_CHILD in argv) or (kind == "ours" and name.startswith("ray::RayTrainWo")):
            return proc
    return None


class Tracer(threading.Thread):
    """Waits for the run's training process to train, then traces the scheduler for window_s."""

    def __init__(self, kind: str, threads: int, window_s: float, out: Path):
        super().__init__(daemon=True)
        self.kind, self.threads, self.window_s, self.out = kind, threads, window_s, out
        self.result: dict | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil
        try:
            while not (proc := training_process(self.kind)):
                if self.stop.wait(0.1):
                    return
            last, since = proc.cpu_times(), time.monotonic()
            while not self.stop.wait(0.25):  # training: its threads keep most of their cores busy
                now, times = time.monotonic(), proc.cpu_times()
                rate = (times.user + times.system - last.user - last.system) / (now - since)
                last, since = times, now
                if rate >= 0.8 * self.threads:
                    break
            else:
                return
            if self.stop.wait(1.0):  # past the first steps; a run that ended meanwhile has nothing to trace
                return
            subprocess.run(["perf", "sched", "record", "-o", str(self.out), "--", "sleep", str(self.window_s)],
                           capture_output=True, check=True)
            self.result = {"pid": proc.pid, "threads": thread_table()}
        except (psutil.Error, subprocess.CalledProcessError) as err:
            print(f"trace of the {self.kind} run failed: {err}", file=sys.stderr)


def perf_usable(tmp: str) -> bool:
    probe = Path(tmp) / "probe.data"
    done = subprocess.run(["perf", "sched", "record", "-o", str(probe), "--", "true"], capture_output=True)
    return done.returncode == 0 and probe.is_file()


def traced_run(kind: str, base: dict, threads: int, window_s: float, tmp: str) -> dict:
    import overhead
    trace = Path(tmp) / f"{kind}.data"
    tracer = Tracer(kind, threads, window_s, trace)
    tracer.start()
    try:
        run = (overhead.plain_in_subprocess({**base, "num_threads": threads}) if kind == "plain"
               else overhead.ours_run(base, threads, Path(tempfile.mkdtemp(dir=tmp))))
    finally:
        tracer.stop.set()
        tracer.join()
    if not tracer.result:
        raise SystemExit(f"no trace of the {kind} run (it never kept {threads} threads busy, or perf failed)")
    script = subprocess.run(["perf", "sched", "script", "-i", str(trace)], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    trace.unlink()
    switches = parse_switches(script)
    if len(switches) < 2:
        raise SystemExit(f"no sched_switch events read from the {kind} run's trace (an unfamiliar perf output format?)")
    return {"kind": kind, "step_time_s": run["step_time_s"], "train_loss": run["train_loss"],
            **analyse(switches, tracer.result["threads"], tracer.result["pid"], threads)}


def summary(runs: list[dict]) -> dict:
    arms = {kind: [r for r in runs if r["kind"] == kind] for kind in ("plain", "ours")}
    mid = {kind: {key: median([r[key] for r in arm]) for key in
                  ("step_time_s", "stall_share", "preemptions_per_s", "others_cores", "tracer_cores")}
           for kind, arm in arms.items()}
    return {"by_arm": mid, "step_time_ratio": mid["ours"]["step_time_s"] / mid["plain"]["step_time_s"],
            "explained_ratio": (1 - mid["plain"]["stall_share"]) / (1 - mid["ours"]["stall_share"])}


def rows(runs: list[dict], figures: dict) -> list[tuple[str, str]]:
    table = [(f"{r['kind']} run {i + 1}",
              f"step {r['step_time_s'] * 1e3:6.1f} ms  stall {r['stall_share'] * 100:4.1f}%  preempted "
              f"{r['preemptions_per_s']:4.0f}/s  others {r['others_cores']:.3f} cores  (perf {r['tracer_cores']:.3f}); "
              + ", ".join(f"{name} {cores:.3f}" for name, cores in list(r["others_by_process"].items())[:4]))
             for i, r in enumerate(runs)]
    for kind, m in figures["by_arm"].items():
        table.append((f"{kind} (median)",
                      f"step {m['step_time_s'] * 1e3:6.1f} ms  stall {m['stall_share'] * 100:4.1f}%  "
                      f"preempted {m['preemptions_per_s']:4.0f}/s  others {m['others_cores']:.3f} cores"))
    table.append(("step_time_ratio (these runs)", f"{figures['step_time_ratio']:.3f}"))
    table.append(("explained_ratio (stalls alone)", f"{figures['explained_ratio']:.3f}"))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="(plain, ours) pairs")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads (default: all cores)")
    parser.add_argument("--window", type=float, default=4.0, help="seconds traced per run")
    parser.add_argument("--out", type=Path, default=RESULTS / "contention.json")
    args = parser.parse_args()
    base = embedded_config(epochs=1, batch_size=16)
    with tempfile.TemporaryDirectory(prefix="bench-contention-") as tmp:
        if not shutil.which("perf") or not perf_usable(tmp):
            print("contention: needs `perf` allowed to record scheduler events (sched tracepoints); "
                  "run as root or with perf_event_paranoid -1", file=sys.stderr)
            raise SystemExit(2)
        runs = []
        for index in range(2 * args.rounds):
            kind = ("plain", "ours")[index % 2]
            print(f"[{index + 1}/{2 * args.rounds}] {kind} ...", file=sys.stderr, flush=True)
            runs.append(traced_run(kind, base, args.threads, args.window, tmp))
    figures = summary(runs)
    print_table(f"contention: {args.threads} torch threads, {args.window:.0f} s traced per run", rows(runs, figures))
    write_json(args.out, {"benchmark": "contention", "machine": machine(), "config": base,
                          "threads": args.threads, "figures": figures, "runs": runs})


if __name__ == "__main__":
    main()
