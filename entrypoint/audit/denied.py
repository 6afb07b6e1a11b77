"""Count the training uid's refused file accesses while it runs, from the kernel's audit stream.

`DeniedAccessCounter(uid, key)` subscribes to the kernel's audit multicast group (netlink,
AUDIT_NLGRP_READLOG: a read-only copy of every record, beside auditd if one runs; needs
CAP_AUDIT_READ) for as long as the trainer runs, and counts the SYSCALL records that carry our
rule key, `success=no` and the training uid. The rules producing them are the failed-access
rules of policies/audit/secure-trainer.rules (the workspace, EACCES/EPERM, that uid).
`count()` after `stop()` is None when nothing could be observed (no subscription, or the
kernel's auditing is off: rules load then, but no record is made).
SECURITY: never keeps or returns a record's text (it names paths and file names); only the
count leaves this module. Never writes to the audit subsystem (no rule, no state change).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import TracebackType
from typing import Self

__all__ = ["DeniedAccessCounter"]

_NETLINK_AUDIT = 9  # linux/netlink.h
_AUDIT_NLGRP_READLOG = 1  # linux/audit.h: multicast group of read-only log listeners
_AUDIT_SYSCALL = 1300
_NLMSG_HDR = struct.Struct("=IHHII")
_DRAIN_S = 0.5  # kauditd delivers asynchronously: the trainer's last records may trail its exit


class DeniedAccessCounter:
    """A context manager counting refused accesses of `uid` under our rule `key`."""

    def __init__(self, uid: int, key: str, *, enabled: bool | None) -> None:
        """`enabled`: the kernel's audit state (`Auditctl.enabled()`); only True observes."""
        self._needles = (f'key="{key}"'.encode(), b" success=no ", f" uid={uid} ".encode())
        self._enabled = enabled is True
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._count = 0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Subscribe and start counting; a refused subscription leaves it unobserved."""
        if not self._enabled:
            return
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_AUDIT)
            sock.bind((0, _AUDIT_NLGRP_READLOG))
            sock.settimeout(0.2)
        except OSError:
            return
        self._sock = sock
        self._thread = threading.Thread(target=self._read, name="audit-denied", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Drain briefly, stop the reader, close the socket."""
        if self._thread is None or self._sock is None:
            return
        time.sleep(_DRAIN_S)
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        self._thread = None

    def count(self) -> int | None:
        """Refused accesses seen (a lower bound: the kernel drops multicast records a slow
        reader cannot take); None when the stream could not be observed."""
        return self._count if self._sock is not None else None

    def _read(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:  # ENOBUFS: records were dropped; keep counting what comes
                continue
            self._count += self._matches(data)

    def _matches(self, data: bytes) -> int:
        found = 0
        while len(data) >= _NLMSG_HDR.size:
            length, kind, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data)
            if length < _NLMSG_HDR.size:
                break
            body = data[_NLMSG_HDR.size:length]
            if kind == _AUDIT_SYSCALL and all(n in body + b" " for n in self._needles):
                found += 1
            data = data[(length + 3) & ~3:]
        return found
