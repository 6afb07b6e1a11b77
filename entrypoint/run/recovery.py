"""Recovery after a run that died by SIGKILL: its marker, mount, kernel rules and scratch files.

`recover_stale_run` runs at the start of every `run` (before the new marker is written):
unmount the dead run's workspace (lazily when the FUSE daemon is gone or the mount stays busy),
remove its kernel audit rules, wipe the host-side scratch targets and clear the marker.
`wipe_stale_tmp` removes the dead run's `tmp/<run-id>` once the workspace is mounted again.
SECURITY: never touches anything of a live run (a marker whose pid lives → WorkspaceError);
reports counts only, never a path.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from entrypoint.audit.run_rules import RunAudit
from entrypoint.errors import WorkspaceError
from entrypoint.run.marker import clear_run_marker, read_run_marker
from entrypoint.run.wipe import WipeReport, wipe
from entrypoint.workspace.gocryptfs import Gocryptfs, Workspace

__all__ = ["StaleRun", "recover_stale_run", "wipe_stale_tmp"]


@dataclass(frozen=True)
class StaleRun:
    """What the recovery of a dead run found and did."""

    run_id: str
    mountpoint: Path
    unmounted: bool
    """A mount of the dead run was still there and is gone now."""
    lazy: bool
    """The unmount had to be lazy (dead FUSE daemon or a busy mount)."""
    rules_removed: int
    wiped: WipeReport

    def audit_fields(self) -> dict[str, object]:
        """The `recovered_stale_run` record: ids and counts, no path."""
        return {"stale_run_id": self.run_id, "unmounted": self.unmounted, "lazy": self.lazy,
                "rules_removed": self.rules_removed, "wiped_files": self.wiped.files,
                "wiped_bytes": self.wiped.bytes}


def _unmount(fs: Gocryptfs, mountpoint: Path) -> tuple[bool, bool]:
    if not fs.is_mounted(mountpoint):
        return False, False
    try:
        fs.unmount(mountpoint)
        return True, False
    except WorkspaceError:
        # A daemon killed with the run leaves ENOTCONN behind, and a leftover process may still
        # hold files open: detach it lazily so the next mount gets a clean mountpoint.
        fs.unmount(mountpoint, lazy=True)
        return True, True


def recover_stale_run(state_dir: Path, *, gocryptfs: Gocryptfs, run_audit: RunAudit,
                      wipe_targets: list[Path]) -> StaleRun | None:
    """Clean up after a dead run whose marker is in `state_dir`; None when there is none.

    Raises WorkspaceError when the marker's process is alive (another run is active) or the
    mount cannot be removed, AuditError when its kernel rules cannot be removed. The marker
    is cleared only after everything else succeeded, so a failed recovery is retried.
    """
    marker = read_run_marker(state_dir)
    if marker is None:
        return None
    if marker.process_alive():
        raise WorkspaceError("another run is active on this machine (run marker held)")
    mountpoint = Path(marker.mountpoint)
    # Unmount first: auditctl cannot delete a watch on a path that answers ENOTCONN (a mount
    # whose daemon died); the watch is kept by path, so it is still found afterwards.
    unmounted, lazy = _unmount(gocryptfs, mountpoint)
    rules = run_audit.recover_stale() or 0
    report = wipe(wipe_targets)
    clear_run_marker(state_dir)
    return StaleRun(run_id=marker.run_id, mountpoint=mountpoint, unmounted=unmounted,
                    lazy=lazy, rules_removed=rules, wiped=report)


def wipe_stale_tmp(ws: Workspace, stale: StaleRun) -> WipeReport | None:
    """Wipe the dead run's `tmp/<run-id>` in the (now mounted) workspace; None if not ours.

    Only when the dead run used this workspace's mountpoint; the run id comes from our own
    marker (validated as a single path segment before use).
    """
    run_id = stale.run_id
    if stale.mountpoint != ws.mountpoint or not run_id or "/" in run_id or run_id in (".", ".."):
        return None
    target = ws.tmp_dir / run_id
    report = wipe([target])
    shutil.rmtree(target, ignore_errors=True)
    return report
