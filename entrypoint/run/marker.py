"""The run marker: a small JSON file in the root-only state dir saying a run is in progress.

A run that dies by SIGKILL leaves its marker behind; the next start reads it, cleans up
(unmount, wipe) and records `recovered_stale_run`. A marker names a live run only when its pid
is not our own and that pid is the same process that wrote it: same kernel boot
(/proc/sys/kernel/random/boot_id) and same process start time (/proc/<pid>/stat field 22). A
persisted state dir seen by a new container (where the dead run's pid is often our own pid,
e.g. 1 under tini's child numbering) or after a reboot is therefore recovered, not refused.
SECURITY: the marker holds no secret and no data path — run id, pid, start time and the
workspace mountpoint (configuration, needed to unmount) only. The state dir is made 0700.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from entrypoint.errors import WorkspaceError

__all__ = ["MARKER_NAME", "RunMarker", "boot_id", "clear_run_marker", "process_start",
           "read_run_marker", "write_run_marker"]

MARKER_NAME = "run.marker"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """This kernel boot's id, or None when the kernel does not expose one."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (/proc/<pid>/stat field 22); None when
    the process does not exist (or /proc cannot say)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after its closing parenthesis.
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 overall = index 19 after pid and comm
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class RunMarker:
    """What a run leaves behind while it is alive."""

    run_id: str
    pid: int
    mountpoint: str
    started: float
    """Unix time the run started."""
    boot_id: str | None = None
    """Kernel boot id when the marker was written (None: written by an older version)."""
    process_start: int | None = None
    """The writer's start time in clock ticks since boot (None: older version)."""

    def process_alive(self) -> bool:
        """True only when the run that wrote the marker still runs: its pid exists, is not our
        own, and (when recorded) has the same boot id and process start time."""
        if self.pid == os.getpid():
            return False  # we are starting: the writer is dead and its pid was reused by us
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        if self.boot_id is not None and self.boot_id != boot_id():
            return False  # another boot (or container host): the writer cannot still run
        # A different start time: the pid now belongs to another process.
        return self.process_start is None or self.process_start == process_start(self.pid)


def write_run_marker(state_dir: Path, run_id: str, mountpoint: Path,
                     pid: int | None = None) -> RunMarker:
    """Atomically write `<state_dir>/run.marker` (dir 0700, file 0600). Raises WorkspaceError."""
    owner = pid if pid is not None else os.getpid()
    marker = RunMarker(run_id=run_id, pid=owner, mountpoint=str(mountpoint),
                       started=round(time.time(), 3), boot_id=boot_id(),
                       process_start=process_start(owner))
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = state_dir / f".{MARKER_NAME}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(asdict(marker)).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, state_dir / MARKER_NAME)
    except OSError as exc:
        raise WorkspaceError(f"could not write the run marker ({exc.strerror})") from None
    return marker


def read_run_marker(state_dir: Path) -> RunMarker | None:
    """The marker left in `state_dir`, or None. A corrupt marker raises WorkspaceError."""
    try:
        data = json.loads((state_dir / MARKER_NAME).read_text())
        start = data.get("process_start")
        return RunMarker(run_id=str(data["run_id"]), pid=int(data["pid"]),
                         mountpoint=str(data["mountpoint"]), started=float(data["started"]),
                         boot_id=str(data["boot_id"]) if data.get("boot_id") else None,
                         process_start=int(start) if start is not None else None)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise WorkspaceError("the run marker is unreadable (remove it after checking for a "
                             "live run)") from None


def clear_run_marker(state_dir: Path) -> None:
    """Remove the marker; a no-op when there is none. Raises WorkspaceError on other failures."""
    try:
        (state_dir / MARKER_NAME).unlink(missing_ok=True)
    except OSError as exc:
        raise WorkspaceError(f"could not remove the run marker ({exc.strerror})") from None
