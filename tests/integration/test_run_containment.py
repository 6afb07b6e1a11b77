"""kill_training_processes: finds a uid's processes (also one in its own session) by real uid,
kills them, and never touches another uid. Real processes through setpriv (needs root)."""

from __future__ import annotations

import subprocess
import time

import pytest

from entrypoint.run.containment import kill_training_processes, processes_of

pytestmark = [pytest.mark.integration, pytest.mark.root]
UID = 10077  # unused elsewhere in the suite


def test_kills_every_process_of_the_uid_and_nothing_else() -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    child = subprocess.Popen(
        ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--",
         "sh", "-c", "setsid sleep 60 </dev/null >/dev/null 2>&1 & exec sleep 60"])
    try:
        deadline = time.monotonic() + 10
        while len(processes_of(UID)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes_of(UID)) == 2
        assert kill_training_processes(UID) == 2
        child.wait(timeout=10)
        assert processes_of(UID) == []
        assert bystander.poll() is None  # root's process was left alone
    finally:
        bystander.kill()
        bystander.wait()
        if child.poll() is None:
            child.kill()
            child.wait()
    with pytest.raises(ValueError):
        kill_training_processes(0)
