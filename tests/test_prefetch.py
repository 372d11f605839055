"""trainables.prefetch.ahead: order, laziness bound, errors and early exit."""
import threading
import time

import pytest

from trainables.prefetch import ahead


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_results_come_in_order(depth):
    def slow_square(x):
        time.sleep(0.002 * (5 - x % 5))  # later items finish first if run concurrently
        return x * x
    assert list(ahead(range(12), slow_square, depth)) == [x * x for x in range(12)]


def test_runs_on_another_thread_at_most_depth_ahead():
    started, threads = [], set()

    def produce(x):
        started.append(x)
        threads.add(threading.get_ident())
        return x

    results = ahead(range(10), produce, depth=2)
    assert next(results) == 0
    time.sleep(0.05)
    assert len(started) <= 3  # the one handed out + two ahead
    assert list(results) == list(range(1, 10))
    assert threading.get_ident() not in threads


def test_an_error_surfaces_at_its_item_and_stops():
    def produce(x):
        if x == 3:
            raise ValueError("bad line 3")
        return x
    seen = []
    with pytest.raises(ValueError, match="bad line 3"):
        for value in ahead(range(10), produce, depth=2):
            seen.append(value)
    assert seen == [0, 1, 2]


def test_an_early_break_does_not_hang():
    for value in ahead(iter(range(1000)), lambda x: x, depth=4):
        if value == 5:
            break
