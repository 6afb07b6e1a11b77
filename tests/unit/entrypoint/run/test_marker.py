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
    assert set(json.loads((state / "run.marker").read_text())) == {"run_id", "pid", "mountpoint",
                                                                    "started"}
    marker = read_run_marker(state)
    assert marker == written and marker.pid == os.getpid() and marker.process_alive()
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
