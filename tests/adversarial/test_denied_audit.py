"""Hostile attempts are in the app log, not only their effects: refused accesses are counted.

A real run in kernel audit mode loads the failed-access rules of policies/audit/secure-trainer.rules
(the workspace, EACCES/EPERM, the training uid); while the trainer runs, the supervisor counts
the matching records from the kernel's audit multicast stream and writes
`trainer_denied_access count=N` (no path) into the hash-chained app log. A hostile trainer that
tries the registry, the pseudonym key and the audit log gets one; a benign one gets none.
The kernel records nothing while auditing is off (this host boots with it off, and no auditd
runs): the fixture turns it on for the test and back off after.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from entrypoint.audit.auditctl import Auditctl, AuditMode
from tests.adversarial.hostile import FAKE_LORA, HostileTrainer, lifecycle
from tests.integration.run_support import RunCase, app_events, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture
def kernel_auditing() -> Iterator[None]:
    """Kernel auditing on for the test (`auditctl -e 1`), restored after."""
    was = Auditctl().enabled()
    if was is False:
        subprocess.run(["auditctl", "-e", "1"], check=True, capture_output=True, timeout=30)
    try:
        yield
    finally:
        if was is False:
            subprocess.run(["auditctl", "-e", "0"], check=False, capture_output=True, timeout=30)


@pytest.fixture
def case(dev_vault: Any, tmp_path: Any, tiny_model: Any, tiny_dataset: Any) -> RunCase:
    return prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)


def _denied(case: RunCase, run_id: str) -> list[dict[str, Any]]:
    with case.opened() as ws:
        return [e["fields"] for e in app_events(ws)
                if e["event"] == "trainer_denied_access" and e["fields"]["run_id"] == run_id]


def test_refused_reads_are_counted_in_the_app_log(case: RunCase, kernel_auditing: None) -> None:
    # A benign run first: it finds nothing to count, and its seal creates the registry.
    benign = lifecycle(case, HostileTrainer(FAKE_LORA), audit_mode=AuditMode.KERNEL)
    benign.execute()
    assert _denied(case, benign.run_id) == []

    hostile = HostileTrainer('probe registry "cat registry.sqlite"\n'
                             'probe registry-write "echo x >> registry.sqlite"\n'
                             'probe key "cat .secure-trainer/pseudonym.key"\n'
                             'probe audit-log "cat audit/app.jsonl"\n' + FAKE_LORA)
    run = lifecycle(case, hostile, audit_mode=AuditMode.KERNEL)
    run.execute()
    assert hostile.verdicts() == {"registry": "DENIED", "registry-write": "DENIED",
                                  "key": "DENIED", "audit-log": "DENIED"}
    events = _denied(case, run.run_id)
    # The registry read and write are refused on an existing file: at least those two.
    assert len(events) == 1 and events[0]["count"] >= 2, events
    assert set(events[0]) == {"run_id", "count"}  # a count, never a path
