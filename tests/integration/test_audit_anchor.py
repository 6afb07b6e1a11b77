"""The audit log's head anchored in a real OpenBao KV v2 (check-and-set): `audit verify
--anchored` fails (exit 6) on truncation, rollback to an older copy, deletion, a replaced log
and a log ahead of its anchor; a stale writer cannot move the anchor; a deleted anchor fails."""

from __future__ import annotations

import io
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from entrypoint.audit.anchor import (
    AnchorMode,
    Head,
    KvHeadStore,
    anchor_after_op,
    anchor_head,
    verify_anchored,
)
from entrypoint.audit.applog import AppAuditLog, verify
from entrypoint.cli import main
from entrypoint.errors import AuditError
from entrypoint.secret import Secret
from entrypoint.vault.devserver import DevVault

pytestmark = [pytest.mark.integration]
KEY = "ef" * 32


@pytest.fixture
def store(dev_vault: DevVault) -> KvHeadStore:
    return KvHeadStore(dev_vault.root_client().secrets.kv.v2, mount="secret",
                       path=f"st-anchor-{uuid.uuid4().hex[:8]}/audit-head")


def _log(path: Path, n: int) -> AppAuditLog:
    log = AppAuditLog(path, Secret(KEY))
    for i in range(n):
        log.append("op", n=i)
    return log


def test_anchor_then_every_tampering_is_caught(store: KvHeadStore, tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    log = _log(path, 3)
    assert anchor_head(path, Secret(KEY), store) == Head(3, verify(path, Secret(KEY)).head)
    old_copy = tmp_path / "backup.jsonl"
    shutil.copy(path, old_copy)  # a backup taken at record 3
    log.append("erasure", loras=1)
    log.append("teardown")
    head = anchor_head(path, Secret(KEY), store)
    assert head.seq == 5 and verify_anchored(path, Secret(KEY), store).records == 5
    assert store.read()[1] == 2  # two anchor versions, each written with cas

    good = path.read_bytes()
    # Rollback to the older (valid, shorter) copy.
    shutil.copy(old_copy, path)
    with pytest.raises(AuditError, match="rolled back"):
        verify_anchored(path, Secret(KEY), store)
    # ... and no anchor is written for it: the anchor never moves backwards.
    with pytest.raises(AuditError, match="does not extend"):
        anchor_head(path, Secret(KEY), store)
    # Truncation of the last record.
    path.write_bytes(b"".join(good.splitlines(keepends=True)[:4]))
    with pytest.raises(AuditError, match="cut off"):
        verify_anchored(path, Secret(KEY), store)
    # Deletion (a new chain would start at 1).
    path.unlink()
    with pytest.raises(AuditError, match="deleted"):
        verify_anchored(path, Secret(KEY), store)
    # Replaced: another valid chain of the same length under the same key.
    _log(path, 5)
    with pytest.raises(AuditError, match="replaced"):
        verify_anchored(path, Secret(KEY), store)
    # Ahead: a record written after the last anchored operation.
    path.write_bytes(good)
    AppAuditLog(path, Secret(KEY)).append("late")
    with pytest.raises(AuditError, match="past its anchor"):
        verify_anchored(path, Secret(KEY), store)


def test_check_and_set_refuses_a_stale_writer(store: KvHeadStore, tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    _log(path, 2)
    anchor_head(path, Secret(KEY), store)
    _, version = store.read()
    store.write(Head(2, verify(path, Secret(KEY)).head), cas=version)  # another writer moved it
    with pytest.raises(AuditError, match="check-and-set"):
        store.write(Head(9, "0" * 64), cas=version)


def test_deleted_anchor_fails(dev_vault: DevVault, store: KvHeadStore, tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    _log(path, 2)
    anchor_head(path, Secret(KEY), store)
    kv = dev_vault.root_client().secrets.kv.v2
    kv.delete_latest_version_of_secret(path=store._path, mount_point="secret")
    with pytest.raises(AuditError, match="deleted"):
        verify_anchored(path, Secret(KEY), store)


def test_required_mode_fails_without_an_anchor_warn_mode_reports(tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    _log(path, 1)
    warnings: list[str] = []
    assert anchor_after_op(path, Secret(KEY), None, AnchorMode.WARN, warnings.append) is None
    assert warnings and "not anchored" in warnings[0]
    with pytest.raises(AuditError):
        anchor_after_op(path, Secret(KEY), None, AnchorMode.REQUIRED, warnings.append)


def test_cli_registry_erase_anchors_and_verify_anchored_catches_rollback(
        dev_vault: DevVault, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI with the site policy's AppRole (it grants the head path): `registry expire`
    anchors the head (required mode); `audit verify --anchored` passes, then fails (exit 6)
    on the log restored from an older copy."""
    tag = uuid.uuid4().hex[:8]
    env = dev_vault.add_workspace_role(f"role-{tag}", tmp_path / "creds",
                                       key_path=f"st-{tag}/ws", audit_key_path=f"st-{tag}/audit")
    ws = tmp_path / "ws"
    ws.mkdir()
    for name, value in {**env, "ST_MOUNTPOINT": str(ws), "ST_AUDIT_ANCHOR": "required"}.items():
        monkeypatch.setenv(name, value)

    def cli(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out + err

    from datetime import timedelta

    from secure_trainer.registry import Registry

    reg = Registry(ws / "registry.sqlite")
    for run in ("r1", "r2"):
        (ws / "runs" / run).mkdir(parents=True)
        (ws / "runs" / run / "lora.safetensors").write_bytes(run.encode())
        reg.register_run(run, ws / "runs" / run / "lora.safetensors", None, "d", [], [],
                         "o", "p", "l", expires=timedelta(seconds=-1))
        if run == "r1":
            code, out = cli("registry", "expire", "--yes", "--unsafe-plaintext-dest")
            assert code == 0 and "anchored in Vault at record 1" in out, out
            backup = (ws / "audit" / "app.jsonl").read_bytes()
    code, out = cli("registry", "expire", "--yes", "--unsafe-plaintext-dest")
    assert code == 0 and "anchored in Vault at record 2" in out, out
    code, out = cli("audit", "verify", "--anchored")
    assert code == 0 and "ok: 2 records" in out, out
    (ws / "audit" / "app.jsonl").write_bytes(backup)
    code, out = cli("audit", "verify")  # the chain alone still verifies ...
    assert code == 0, out
    code, out = cli("audit", "verify", "--anchored")  # ... the anchor does not
    assert code == 6 and "rolled back" in out, out
