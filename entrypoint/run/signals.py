"""Deferring SIGTERM/SIGINT across a critical section (mount, audit-rule load, spawn, teardown).

A signal that lands in the middle of such a step would leave half-done state behind (a mount
whose gocryptfs daemon comes up after teardown looked, a kernel rule added but not recorded,
a token issued but never revoked). Inside `deferred_signals()` the signal is only noted; when
the section ends the original handler runs (for `run`: `Interrupted`, exit 128+signum).
Must never: swallow a signal — every deferred one is re-delivered.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["DEFERRED_SIGNALS", "deferred_signals"]

DEFERRED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGTERM/SIGINT until the block ends, then re-deliver the first one.

    Nestable: an inner section defers into the outer one. Outside the main thread (where
    Python cannot install handlers) it is a plain pass-through. The re-delivered signal's
    handler may raise (`Interrupted`); that exception then replaces any the block raised.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def _note(signum: int, _frame: FrameType | None) -> None:
        caught.append(signum)

    previous = {s: signal.signal(s, _note) for s in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            # raise_signal runs the restored handler before it returns (PyErr_CheckSignals).
            signal.raise_signal(caught[0])
