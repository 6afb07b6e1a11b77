"""Nothing happens unrecorded: a run denied by the policy before the mount, and one whose Vault
is unreachable, leave their records in the root-only journal, and the next good run merges
them into the app log, in order, which verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from entrypoint.audit.applog import verify
from entrypoint.audit.journal import JOURNAL_NAME
from entrypoint.secret import Secret
from entrypoint.vault.devserver import DevVault
from tests.integration.run_support import RunProcess, app_events, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]


def test_denied_run_then_good_run_leaves_the_denial_in_the_verified_log(
        dev_vault: DevVault, tmp_path: Path, tiny_model: Any, tiny_dataset: Path) -> None:
    case = prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)
    base = case.policy()
    deny = tmp_path / "deny-all.yaml"
    deny.write_text(
        "name: deny-all\ndescription: denies every run before the mount (test)\n"
        f"extends: {base}\nrules:\n  - id: site.deny_all\n"
        "    description: A test rule that never holds.\n    expression: process.euid < 0\n"
        "    action: deny\n    reason: denied by the test profile\n    phase: pre-mount\n")
    code, out = RunProcess(case, steps=1, policy=str(deny)).finish(timeout=300)
    assert code == 3, out[-2000:]
    journal = case.state / JOURNAL_NAME
    assert journal.is_file() and journal.stat().st_mode & 0o777 == 0o600
    assert b"policy_denied" in journal.read_bytes()
    # A run whose Vault is unreachable fails before the mount too: its failure is journaled.
    code, out = RunProcess(case, steps=1, extra_env={"VAULT_ADDR": "http://127.0.0.1:9"}
                           ).finish(timeout=300)
    assert code == 4, out[-2000:]
    assert b"VaultUnreachable" in journal.read_bytes()

    code, out = RunProcess(case, steps=1, extra_env={"ST_AUDIT_MODE": "app"}).finish(timeout=600)
    assert code == 0, out[-3000:]
    assert not journal.exists()
    with case.opened() as ws:
        assert verify(ws.audit_dir / "app.jsonl", Secret(case.audit_key_hex())).ok
        events = app_events(ws)
    journaled = [e for e in events if e["fields"].get("journaled")]
    names = [e["event"] for e in journaled]
    assert "policy_denied" in names and "run_failed" in names
    denied = next(e for e in journaled if e["event"] == "policy_denied")
    failed = next(e for e in journaled if e["event"] == "run_failed")
    assert failed["fields"]["error"] == "DeniedByPolicy" and failed["fields"]["exit_code"] == 3
    assert denied["fields"]["run_id"] == failed["fields"]["run_id"]
    # The denied run's records come before the good run's own, in the order they happened.
    good_run = next(e for e in events if e["event"] == "workspace_mounted")["fields"]["run_id"]
    assert denied["fields"]["run_id"] != good_run
    assert events.index(denied) < events.index(failed)
    vault_failed = [e for e in journaled if e["event"] == "run_failed"
                    and e["fields"]["error"] == "VaultUnreachable"]
    assert len(vault_failed) == 1 and vault_failed[0]["fields"]["exit_code"] == 4
    assert events.index(failed) < events.index(vault_failed[0])
    assert json.dumps(journaled).count("journal_id") == len(journaled)
