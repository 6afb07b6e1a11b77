"""Length-prefixed frames on a pipe between the supervisor and the decoder child.

A frame is a 4-byte big-endian length and that many bytes. The supervisor side reads and
writes with a deadline (the child may be hostile once it has parsed an image); the child side
blocks.
SECURITY: never reads more than the caller's limit, never waits past the caller's deadline.
"""

from __future__ import annotations

import os
import select
import struct
import time
from typing import BinaryIO

__all__ = ["FrameError", "read_frame", "read_frame_until", "write_frame", "write_frame_until"]

_HEADER = struct.Struct(">I")
_CHUNK = 1 << 20


class FrameError(Exception):
    """The peer closed the pipe, sent too much, or missed the deadline (`timed_out`)."""

    def __init__(self, what: str, *, timed_out: bool = False) -> None:
        super().__init__(what)
        self.timed_out = timed_out


def write_frame(fh: BinaryIO, payload: bytes | bytearray) -> None:
    """Child side: write one frame and flush (blocking)."""
    fh.write(_HEADER.pack(len(payload)))
    fh.write(payload)
    fh.flush()


def read_frame(fh: BinaryIO, limit: int) -> bytes | None:
    """Child side: one frame, or None at a clean end of input. Raises FrameError."""
    head = fh.read(_HEADER.size)
    if not head:
        return None
    if len(head) != _HEADER.size:
        raise FrameError("short frame header")
    (size,) = _HEADER.unpack(head)
    if size > limit:
        raise FrameError("frame too large")
    data = fh.read(size)
    if len(data) != size:
        raise FrameError("short frame")
    return data


def _wait(fd: int, write: bool, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FrameError("deadline passed", timed_out=True)
    ready = select.select([], [fd], [], remaining) if write else select.select([fd], [], [],
                                                                               remaining)
    if not any(ready):
        raise FrameError("deadline passed", timed_out=True)


def write_frame_until(fd: int, payload: bytes | bytearray, deadline: float) -> None:
    """Supervisor side: write one frame to the pipe `fd` (set non-blocking, so a peer that
    stops reading cannot hold us) before `deadline`."""
    view = memoryview(_HEADER.pack(len(payload)) + bytes(payload))
    while view:
        _wait(fd, True, deadline)
        try:
            written = os.write(fd, view[:_CHUNK])
        except BlockingIOError:
            continue  # the pipe filled up between select and write
        except BrokenPipeError:
            raise FrameError("peer closed the pipe") from None
        view = view[written:]


def _read_exact(fd: int, size: int, deadline: float) -> bytes:
    parts: list[bytes] = []
    left = size
    while left:
        _wait(fd, False, deadline)
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            raise FrameError("peer closed the pipe")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_frame_until(fd: int, limit: int, deadline: float) -> bytes:
    """Supervisor side: one frame of at most `limit` bytes from `fd` before `deadline`."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > limit:
        raise FrameError("frame too large")
    return _read_exact(fd, size, deadline)
