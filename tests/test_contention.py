"""benchmarks/contention.py's reading of a scheduler trace, on a hand-written `perf sched script` excerpt."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
_environ = dict(os.environ)
contention = pytest.importorskip("contention")
os.environ.clear()
os.environ.update(_environ)  # benchmarks/common sets the benchmarks' environment on import: not the suite's


def switch(t, cpu, prev, prev_state, nxt, next_comm="x"):
    return (f"  x {prev} [{cpu:03d}] {t:.6f}:       sched:sched_switch: prev_comm=x prev_pid={prev} prev_prio=120 "
            f"prev_state={prev_state} ==> next_comm={next_comm} next_pid={nxt} next_prio=120")


# Team threads 101 (cpu 0) and 102 (cpu 1) of the trainer (pid 100); 103 is another trainer thread,
# 200 the raylet. 101 is preempted by the raylet at 0.100-0.110 and sleeps at 0.300-0.320; 102 is
# preempted by 103 at 0.105-0.115; the trace ends as the raylet takes cpu 0 again.
TRACE = [
    switch(0.000, 0, 0, "R", 101), switch(0.000, 1, 0, "R", 102),
    switch(0.100, 0, 101, "R", 200, "raylet"), switch(0.105, 1, 102, "R", 103),
    switch(0.110, 0, 200, "S", 101), switch(0.115, 1, 103, "S", 102),
    switch(0.300, 0, 101, "S", 0, "swapper/0"), switch(0.320, 0, 0, "R", 101),
    switch(1.000, 0, 101, "R+", 200, "raylet"),
    "a line of something else",
]
THREADS = {101: (100, "python"), 102: (100, "python"), 103: (100, "python"), 200: (200, "raylet")}


def test_parse_switches_reads_each_switch_and_skips_other_lines():
    switches = contention.parse_switches(TRACE)
    assert len(switches) == 9
    assert switches[2] == contention.Switch(0.100, 101, True, 200, "raylet")
    assert switches[6].prev_runnable is False  # went to sleep
    assert switches[8].prev_runnable is True  # R+: still runnable


def test_covered_merges_overlapping_intervals():
    assert contention.covered([(0.3, 0.32), (0.1, 0.11), (0.105, 0.115)]) == pytest.approx(0.035)
    assert contention.covered([]) == 0.0


def test_analyse_finds_the_team_its_stalls_and_who_took_the_cpu():
    figures = contention.analyse(contention.parse_switches(TRACE), THREADS, target_pid=100, team_size=2)
    assert figures["window_s"] == pytest.approx(1.0)
    # Off-core: 0.100-0.115 (the two preemptions overlap) and the sleep 0.300-0.320.
    assert figures["stall_share"] == pytest.approx(0.035)
    assert figures["preemptions_per_s"] == pytest.approx(2.0)  # the last one never ended inside the trace
    assert figures["preempted_by_per_s"] == {"raylet": pytest.approx(1.0), "python": pytest.approx(1.0)}
    assert figures["others_by_process"] == {"raylet": pytest.approx(0.010), "python (trainer)": pytest.approx(0.010)}
    assert figures["others_cores"] == pytest.approx(0.020)
    assert figures["team_cores"] == pytest.approx(0.97 + 0.105)


def test_process_name_names_python_processes_by_their_script():
    log_monitor = ["/usr/bin/python", "-u", "/x/ray/_private/log_monitor.py"]
    assert contention.process_name("python", log_monitor) == "log_monitor.py"
    assert contention.process_name("python3", ["python3", "benchmarks/contention.py"]) == "contention.py"
    assert contention.process_name("raylet", ["/x/raylet", "--a.py"]) == "raylet"
