"""Overlap input with compute: load the next batches' images in one worker thread.

`prefetched(items, load, depth)` yields `(item, load(item))` in the order of `items`, while a
daemon thread runs `load` on the items ahead of the consumer, at most `depth` results buffered
(a bounded queue, so memory stays at a few decoded batches). `load` must be a pure function of
its item (the trainer's image loading draws its augmentation from an RNG seeded by
(seed, epoch, batch number)), so results do not depend on whether or when they were
prefetched: the same order, the same tensors, bit-identical resume.
SECURITY: decoded images stay in memory only — this module never writes a file and never
logs; an exception raised by `load` (DataRejected names a record index only) is re-raised in the
consumer at the item that caused it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


class _Failure:
    """An exception raised by `load`, carried to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Worker(Generic[T, R]):
    """The producer side: one thread, one bounded queue, one stop flag."""

    def __init__(self, items: Sequence[T], load: Callable[[T], R], depth: int) -> None:
        self._items = items
        self._load = load
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _put(self, value: object) -> bool:
        """Block until there is room or the consumer stopped; False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        for item in self._items:
            if self._stop.is_set():
                return
            try:
                value: object = self._load(item)
            except BaseException as error:  # noqa: BLE001 - re-raised in the consumer thread
                self._put(_Failure(error))
                return
            if not self._put(value):
                return
        self._put(_DONE)

    def get(self) -> object:
        return self._queue.get()

    def close(self) -> None:
        """Stop the producer and drop what it buffered (the consumer left early or failed)."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=30)


def prefetched(items: Sequence[T], load: Callable[[T], R], depth: int) -> Iterator[tuple[T, R]]:
    """`(item, load(item))` for each item in order; with depth ≥ 1 loads run ahead in a thread.

    depth 0 loads inline (no thread). Exceptions from `load` surface at their item. Closing the
    generator early (break, exception in the consumer) stops the thread and frees its buffer.
    """
    if depth <= 0:
        for item in items:
            yield item, load(item)
        return
    worker: _Worker[T, R] = _Worker(items, load, depth)
    worker.start()
    try:
        for item in items:
            value = worker.get()
            if isinstance(value, _Failure):
                raise value.error
            if value is _DONE:  # cannot happen before every item was delivered
                raise RuntimeError("prefetch worker ended early")
            yield item, value  # type: ignore[misc]
    finally:
        worker.close()
