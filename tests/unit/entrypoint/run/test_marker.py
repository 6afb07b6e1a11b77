"""The run marker: atomic private JSON, stale detection, corrupt marker is a typed error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.errors import WorkspaceError
from entrypoint.run.marker import clear_run_marker, read_run_marker, write_run_marker


def test_write_read_clear(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert read_run_marker(state) is None
    written = write_run_marker(state, "run-1", Path("/mnt/ws"))
    assert (state.stat().st_mode & 0o777) == 0o700
    assert ((state / "run.marker").stat().st_mode & 0o777) == 0o600
    assert set(json.loads((state / "run.marker").read_text())) == {
        "run_id", "pid", "mountpoint", "started", "boot_id", "process_start"}
    marker = read_run_marker(state)
    assert marker == written and marker.pid == os.getpid()
    assert not marker.process_alive()  # our own pid: the writer is gone (we are the next start)
    clear_run_marker(state)
    clear_run_marker(state)
    assert read_run_marker(state) is None and list(state.iterdir()) == []


def test_dead_pid_is_stale_and_corrupt_marker_raises(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           check=False, capture_output=True, text=True, timeout=60)
    write_run_marker(tmp_path, "run-2", Path("/mnt/ws"), pid=int(child.stdout))
    marker = read_run_marker(tmp_path)
    assert marker is not None and not marker.process_alive()
    (tmp_path / "run.marker").write_text("{not json")
    with pytest.raises(WorkspaceError) as err:
        read_run_marker(tmp_path)
    assert err.value.exit_code == 5 and str(tmp_path) not in err.value.message


def test_live_writer_is_alive_and_identity_mismatch_is_stale(tmp_path: Path) -> None:
    """A live writer's marker holds the start; our own pid, another boot or another process
    start time under the same pid makes it stale (a persisted state dir after `docker kill`)."""
    from dataclasses import replace

    from entrypoint.run.marker import boot_id, process_start

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        marker = write_run_marker(tmp_path, "run-3", Path("/mnt/ws"), pid=child.pid)
        assert marker.boot_id == boot_id() and marker.process_start == process_start(child.pid)
        assert read_run_marker(tmp_path) == marker and marker.process_alive()
        assert not replace(marker, boot_id="another-boot").process_alive()
        assert not replace(marker, process_start=marker.process_start + 1).process_alive()
        assert not replace(marker, pid=os.getpid()).process_alive()
        legacy = replace(marker, boot_id=None, process_start=None)
        assert legacy.process_alive()  # an older marker: the pid check alone still holds
    finally:
        child.kill()
        child.wait()
    assert not marker.process_alive()
