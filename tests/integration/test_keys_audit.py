"""Key operations are audited: `keys rotate` on the closed workspace writes its record to the
root-only pre-mount journal at once, and the next run merges it into the app log, which
verifies. A failed rotation is journaled too (its error type only).

Real OpenBao, gocryptfs and trainer (tiny model, 1 step).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from entrypoint.audit.applog import verify
from entrypoint.audit.journal import JOURNAL_NAME
from entrypoint.secret import Secret
from entrypoint.vault.devserver import DevVault
from tests.integration.run_support import RunProcess, app_events, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]


def _keys(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "entrypoint.cli", "keys", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_rotation_is_in_the_verified_log_after_the_next_run(
        dev_vault: DevVault, tmp_path: Path, tiny_model: Any, tiny_dataset: Path) -> None:
    case = prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)
    env = case.run_env()
    proc = _keys(env, "rotate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    journal = case.state / JOURNAL_NAME
    assert b"key_rotated" in journal.read_bytes()
    assert journal.stat().st_mode & 0o777 == 0o600
    # A rotation that cannot reach Vault fails (exit 4) and is journaled as such.
    proc = _keys({**env, "VAULT_ADDR": "http://127.0.0.1:9"}, "rotate")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert b"key_operation_failed" in journal.read_bytes()

    code, out = RunProcess(case, steps=1, extra_env={"ST_AUDIT_MODE": "app"}).finish(timeout=600)
    assert code == 0, out[-3000:]
    assert not journal.exists()
    with case.opened() as ws:
        assert verify(ws.audit_dir / "app.jsonl", Secret(case.audit_key_hex())).ok
        events = app_events(ws)
    rotated = [e for e in events if e["event"] == "key_rotated"]
    assert len(rotated) == 1 and rotated[0]["fields"]["journaled"] is True
    assert rotated[0]["fields"]["new_version"] == rotated[0]["fields"]["old_version"] + 1
    failed = [e for e in events if e["event"] == "key_operation_failed"]
    assert len(failed) == 1 and failed[0]["fields"]["operation"] == "rotate"
    assert failed[0]["fields"]["exit_code"] == 4
    assert events.index(rotated[0]) < events.index(failed[0])
    mounted = next(e for e in events if e["event"] == "workspace_mounted")
    assert events.index(failed[0]) < events.index(mounted)
