"""`docker kill` of a kernel-audit run: its rules stay on the host until the next start removes them.

Kernel audit rules live in the host kernel, not in the container: SIGKILL of the container runs
no teardown, so the dead run's rules stay loaded (`auditctl -l` on the host). The next start,
with the same state volume (the image's default `ST_STATE_DIR=/state`), reads the rules the dead
run recorded there, removes exactly those, records `recovered_stale_run` with their count and
seals its own run; afterwards no rule of the run's training uid is listed.
The run uses a training uid of its own, so its rules (`-F uid=N`) are told apart from any other
run on this host.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from tests.container.support import (
    TRAIN_ARGS,
    ContainerCase,
    docker,
    run_container,
    wait_for_log,
)

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.root]

KEY = "secure-trainer"  # coupling: policies/audit/secure-trainer.rules `-k`


def _rules_of(uid: int) -> list[str]:
    """Host `auditctl -l` lines with our key that name this uid."""
    out = subprocess.run(["auditctl", "-l"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return [line for line in out.splitlines() if KEY in line and f"uid={uid} " in f"{line} "]


def test_docker_kill_leaves_kernel_rules_that_the_next_start_removes(
        image: str, container_case: ContainerCase) -> None:
    uid = 42000 + os.getpid() % 1000  # no passwd entry in the image; unique on this host
    assert _rules_of(uid) == [], "rules of an earlier run with this uid are still loaded"
    volume = f"st-test-state-{uuid.uuid4().hex[:10]}"
    docker("volume", "create", volume)
    flags = [*container_case.flags(), "-v", f"{volume}:/state",
             "--pid=host", "--cap-add", "AUDIT_CONTROL", "--cap-add", "AUDIT_READ",
             "-e", "ST_AUDIT_MODE=kernel", "-e", f"ST_TRAIN_UID={uid}"]
    name = f"st-test-{uuid.uuid4().hex[:10]}"
    try:
        docker("run", "-d", "--name", name, *flags, image, "run", "--policy", "dev",
               *TRAIN_ARGS, "--max_train_steps", "400")
        assert wait_for_log(name, "[train]", 240), docker("logs", name, check=False).stderr[-2000:]
        assert _rules_of(uid), "the run loaded no rule for its training uid"
        docker("kill", name)
        docker("wait", name, timeout=60)
        docker("rm", "-f", name)
        # No teardown ran: the dead run's rules are still in the host kernel.
        left = _rules_of(uid)
        assert left, "the kernel rules vanished with the container (nothing to recover)"
        result = run_container(image, flags, ["run", "--policy", "dev", *TRAIN_ARGS,
                                              "--max_train_steps", "2"])
        assert result.rc == 0, (result.stdout + result.stderr)[-4000:]
        assert _rules_of(uid) == [], "the next start left the dead run's rules loaded"
        run_id = result.stdout.split("done: run ", 1)[1].split(";", 1)[0]
        with container_case.run.opened() as ws:
            records = [json.loads(line) for line in
                       (ws.audit_dir / "app.jsonl").read_text().splitlines() if line.strip()]
        mine = {r["event"]: r["fields"] for r in records if r["fields"].get("run_id") == run_id}
        assert mine["recovered_stale_run"]["rules_removed"] >= len(left), mine
        assert "sealed" in mine
    finally:
        docker("rm", "-f", "-v", name, check=False)
        docker("volume", "rm", "-f", volume, check=False)
        for rule in _rules_of(uid):  # never leave a rule of this test behind on the host
            subprocess.run(["auditctl", "-d", *rule.split()[1:]], check=False, timeout=30,
                           capture_output=True)
