"""Prefetch stage: read ahead in background threads, in order, a bounded number of items."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pygestor.selection import Selection

T = TypeVar("T")
R = TypeVar("R")

PREFETCH_BYTES = 96 << 20
"""Target compressed bytes in flight when prefetching from a remote root."""


def default_depth(selection: Selection) -> int:
    """Row groups to read ahead: 2 on local disk; remote: enough to keep about
    :data:`PREFETCH_BYTES` in flight (2 to 16)."""
    if selection.is_local:
        return 2
    per_group = max(selection.average_row_group_bytes(), 1.0)
    return int(min(16, max(2, PREFETCH_BYTES // per_group)))


def prefetch(fn: Callable[[T], R], items: Iterable[T], depth: int,
             threads: int | None = None, start: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` in order, running up to ``depth`` calls ahead in background threads.

    The window opens gradually: ``start`` calls at first (default 1 for deep windows), one more
    each time a result is taken, so the first result does not compete with ``depth`` others
    for the network. Memory is bounded by ``depth`` results. Closing the iterator early cancels
    what has not started and waits for what has.
    """
    if depth <= 0:
        for item in items:
            yield fn(item)
        return
    iterator = iter(items)
    pool = ThreadPoolExecutor(max_workers=threads or depth, thread_name_prefix="pygestor-read")
    pending: deque[Future[R]] = deque()
    window = min(depth, start if start is not None else (1 if depth > 2 else depth))

    def fill() -> None:
        for item in iterator:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                break

    try:
        fill()
        while pending:
            head = pending.popleft()
            result = head.result()
            window = min(depth, window + 1)
            fill()
            yield result
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, produced one item ahead in a background thread: while the caller works on
    item ``k``, item ``k + 1`` is being made (and no further, so memory holds two items).
    Errors are raised where the item would have been; closing stops the producer."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pygestor-ahead")
    done = object()

    def produce() -> Any:
        return next(items, done)

    try:
        future = pool.submit(produce)
        while True:
            item = future.result()
            if item is done:
                return
            future = pool.submit(produce)
            yield item
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(items, "close", None)
        if close is not None:
            close()
