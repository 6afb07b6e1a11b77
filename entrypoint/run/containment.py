"""Containment of the trainer's processes: find and kill every process of the training uid.

PR_SET_PDEATHSIG only covers the direct child; a process the trainer double-forked (or moved
into its own session) survives it, can keep the mount busy and keeps reading. The training uid
is dedicated to the trainer, so after the child exits any process whose *real* uid is that uid
is a survivor of this run (a dropped process cannot change its real uid back: no caps,
no_new_privs). Effective and saved uids are not used: the root gocryptfs daemon switches its
threads' effective uid to the caller's while it serves a request, and killing it would tear the
plaintext view away under the supervisor. `kill_training_processes` SIGKILLs them until none is left
(bounded), and the lifecycle fails the run closed when it found any.
Must never signal a process of another uid, and never signal by name (pid and uid only).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["kill_training_processes", "processes_of"]

_ROUNDS = 50  # a survivor that keeps forking is caught by the next scan
_PAUSE_S = 0.05


def processes_of(uid: int) -> list[int]:
    """PIDs whose real uid is `uid` (from /proc/<pid>/status), zombies excluded."""
    found: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue  # exited meanwhile
        for line in status.splitlines():
            if line.startswith("Uid:"):
                if int(line.split()[1]) == uid and _is_running(status):
                    found.append(int(name))
                break
    return found


def _is_running(status: str) -> bool:
    for line in status.splitlines():
        if line.startswith("State:"):
            return line.split()[1] not in ("Z", "X")  # a zombie holds nothing any more
    return True


def kill_training_processes(uid: int) -> int:
    """SIGKILL every process of the training `uid` until none is left; returns how many were
    killed. Raises ValueError for uid 0 (root is never the training uid)."""
    if uid == 0:
        raise ValueError("refusing to kill root's processes")
    killed: set[int] = set()
    for _ in range(_ROUNDS):
        pids = processes_of(uid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(_PAUSE_S)
    return len(killed)
