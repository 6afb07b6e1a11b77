"""The training child dies with its parent: PR_SET_PDEATHSIG(SIGKILL), with and without the drop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from entrypoint.run.trainer_child import child_preexec
from tests.integration.run_support import gone, reachable, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.root]

_GET_PDEATHSIG = textwrap.dedent("""
    import ctypes, os
    libc = ctypes.CDLL(None)
    sig = ctypes.c_int(0)
    libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
    print(sig.value, os.getuid())
""")


@pytest.mark.parametrize("ids", [None, (10001, 10001)], ids=["no-drop", "drop"])
def test_preexec_sets_sigkill_on_parent_death(ids: tuple[int, int] | None) -> None:
    # The venv's interpreter may sit under /root (unreachable for uid 10001); the probe only
    # needs ctypes, so the system interpreter stands in after the drop.
    python = sys.executable if ids is None or reachable() else shutil.which("python3", path="/usr/bin:/bin")
    assert python is not None
    out = subprocess.run([python, "-c", _GET_PDEATHSIG], capture_output=True, text=True,
                         preexec_fn=child_preexec(ids), check=True, timeout=60,
                         cwd="/")
    sig, uid = out.stdout.split()
    # Set after the uid change: the kernel clears it on any euid change, so order matters.
    assert int(sig) == signal.SIGKILL
    assert int(uid) == (ids[0] if ids else os.getuid())


def test_child_is_killed_when_its_parent_is_sigkilled() -> None:
    """A parent (stand-in for `run`) starts a child with `child_preexec`, then dies by SIGKILL."""
    parent_code = textwrap.dedent("""
        import subprocess, sys, time
        from entrypoint.run.trainer_child import child_preexec
        child = subprocess.Popen(["sleep", "300"], preexec_fn=child_preexec(None))
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        assert not gone(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert wait_until(lambda: gone(child_pid), timeout=10), "orphan child survived"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if not gone(child_pid):
            os.kill(child_pid, signal.SIGKILL)  # our own grandchild, by PID
