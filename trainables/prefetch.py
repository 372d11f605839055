"""Prepare the next batches on a background thread while the current step runs.

The tokenizers' Rust code and the pinned host-to-GPU copies release the GIL, so on a GPU worker
one thread hides tokenisation and transfer behind the step. A thread, not DataLoader worker
processes: no fork inside a Ray worker, no pickling of the collection, and order is kept.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def ahead(items: Iterable[Item], produce: Callable[[Item], Result], depth: int) -> Iterator[Result]:
    """produce(item) for each item, in order, computed up to `depth` items ahead on one thread.
    depth 0 computes inline. An exception in produce is raised where its result is consumed."""
    if depth <= 0:
        yield from map(produce, items)
        return
    items = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = deque(pool.submit(produce, item) for _, item in zip(range(depth), items))
        try:
            while pending:
                result = pending.popleft().result()
                for item in items:  # top up by one before handing the result out
                    pending.append(pool.submit(produce, item))
                    break
                yield result
        finally:  # the consumer stopped early (break, exception): drop what was not started
            for future in pending:
                future.cancel()
