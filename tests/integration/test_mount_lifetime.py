"""Real gocryptfs: a tied mount (the one `run` makes) dies with the process that made it.

A SIGKILLed holder — what a `kill -9` of the supervisor is — leaves no plaintext view behind,
even while another process holds the mount busy; the workspace opens again afterwards.
The full `run` case is `test_run_signals.py::test_sigkill_in_phase_then_next_run_recovers`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.errors import WorkspaceError
from entrypoint.secret import Secret
from entrypoint.workspace.gocryptfs import Gocryptfs, Workspace

pytestmark = [pytest.mark.integration, pytest.mark.root]
_REPO = Path(__file__).resolve().parents[2]

# The holder: reads the passphrase from its stdin (a test detail), opens the workspace tied,
# says so, then waits to be killed.
_HOLDER = """
import sys, time
from pathlib import Path
from entrypoint.secret import Secret
from entrypoint.workspace.gocryptfs import Gocryptfs, Workspace
key = Secret(bytearray(sys.stdin.buffer.readline().rstrip(b"\\n")))
fs = Gocryptfs()
ws = Workspace(fs, Path(sys.argv[1]), Path(sys.argv[2]))
ws.open(key, tied=True)
(ws.datasets_dir / "kept.txt").write_bytes(b"written through the tied mount")
print(fs.daemon_pid(ws.mountpoint), flush=True)
time.sleep(600)
"""


def _in_proc_mounts(mountpoint: Path) -> bool:
    target = str(mountpoint.resolve())
    with open("/proc/mounts", encoding="utf-8") as fh:
        return any(len(f := line.split()) > 1 and f[1] == target for line in fh)


def _wait(cond: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh, initialised workspace; always unmounted at the end."""
    fs = Gocryptfs(scratch_dir=tmp_path / "scratch")
    workspace = Workspace(fs, tmp_path / "cipher", tmp_path / "mnt")
    try:
        yield workspace
    finally:
        fs.unmount(workspace.mountpoint, lazy=True)


def test_sigkilled_holder_leaves_no_mount_even_when_busy(ws: Workspace) -> None:
    key = Secret.generate()
    ws.create(key)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(ws.cipher_dir), str(ws.mountpoint)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=_REPO)
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write(key.reveal() + b"\n")
    holder.stdin.close()
    daemon = int(holder.stdout.readline())
    assert _in_proc_mounts(ws.mountpoint)
    argv = Path(f"/proc/{daemon}/cmdline").read_bytes().split(b"\0")
    assert b"-fg" in argv and key.reveal() not in argv
    assert key.reveal() not in Path(f"/proc/{daemon}/environ").read_bytes()
    assert os.getsid(daemon) == daemon  # own session: a terminal's Ctrl-C cannot unmount it
    # A process that keeps the mount busy (cwd inside it), as a hostile survivor would.
    busy = subprocess.Popen(["sleep", "60"], cwd=ws.datasets_dir)
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert _wait(lambda: not _in_proc_mounts(ws.mountpoint), 5), "plaintext view outlived"
        assert _wait(lambda: not Path(f"/proc/{daemon}").exists(), 5), "gocryptfs survived"
        # gocryptfs detached the busy mount lazily: the holder's cwd no longer reaches it.
        assert os.readlink(f"/proc/{busy.pid}/cwd") != str(ws.datasets_dir)
    finally:
        busy.kill()
        busy.wait()
    ws.open(key)  # the next open works and sees what the tied mount wrote
    assert (ws.datasets_dir / "kept.txt").read_bytes() == b"written through the tied mount"
    ws.close()


def test_tied_close_unmounts_and_reaps_and_wrong_key_is_refused(ws: Workspace) -> None:
    key = Secret.generate()
    ws.create(key)
    with pytest.raises(WorkspaceError, match="wrong passphrase"):
        ws.open(Secret.generate(), tied=True)
    assert not ws.gocryptfs.is_mounted(ws.mountpoint)
    ws.open(key, tied=True)
    daemon = ws.status().daemon_pid
    assert daemon is not None and os.getppid() != daemon
    assert Path(f"/proc/{daemon}/status").read_text().count(f"PPid:\t{os.getpid()}") == 1
    ws.close()
    assert not _in_proc_mounts(ws.mountpoint)
    assert not Path(f"/proc/{daemon}").exists()  # reaped: no zombie left behind
