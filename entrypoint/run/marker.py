"""The run marker: a small JSON file in the root-only state dir saying a run is in progress.

A run that dies by SIGKILL leaves its marker behind; the next start reads it, cleans up
(unmount, wipe) and records `recovered_stale_run`.
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

__all__ = ["MARKER_NAME", "RunMarker", "clear_run_marker", "read_run_marker", "write_run_marker"]

MARKER_NAME = "run.marker"


@dataclass(frozen=True)
class RunMarker:
    """What a run leaves behind while it is alive."""

    run_id: str
    pid: int
    mountpoint: str
    started: float
    """Unix time the run started."""

    def process_alive(self) -> bool:
        """True when a process with the marker's pid still exists (it may be a reused pid)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def write_run_marker(state_dir: Path, run_id: str, mountpoint: Path,
                     pid: int | None = None) -> RunMarker:
    """Atomically write `<state_dir>/run.marker` (dir 0700, file 0600). Raises WorkspaceError."""
    marker = RunMarker(run_id=run_id, pid=pid if pid is not None else os.getpid(),
                       mountpoint=str(mountpoint), started=round(time.time(), 3))
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
        return RunMarker(run_id=str(data["run_id"]), pid=int(data["pid"]),
                         mountpoint=str(data["mountpoint"]), started=float(data["started"]))
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
