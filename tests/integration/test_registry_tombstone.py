"""`registry erase` against a real OpenBao: the tombstone's subject tag is keyed by the audit
secret held in Vault, holds no sha256 of the subject id, and checks out only with that key."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import uuid
from pathlib import Path

import pytest
from PIL import Image

from entrypoint.audit import applog
from entrypoint.cli import main
from entrypoint.secret import Secret
from entrypoint.vault.devserver import DevVault
from secure_trainer.registry import Registry

pytestmark = [pytest.mark.integration]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out + err


def test_tombstone_keyed_by_vault_secret(dev_vault: DevVault, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = f"secure-trainer/tomb-{uuid.uuid4().hex[:8]}"
    env = dev_vault.add_workspace_role(f"role-{uuid.uuid4().hex[:8]}", tmp_path / "creds",
                                       key_path=path, audit_key_path=path + "-audit")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    src, ws = tmp_path / "src", tmp_path / "ws"
    (src / "2_x").mkdir(parents=True)
    for name, colour in (("a.png", (240, 10, 10)), ("b.png", (10, 240, 10))):
        Image.new("RGB", (8, 8), colour).save(src / "2_x" / name)
    (src / "subjects.csv").write_text("path,subject\n2_x/a.png,S-1042\n2_x/b.png,T-7\n")
    ws.mkdir()
    monkeypatch.setenv("ST_MOUNTPOINT", str(ws))
    code, out = _cli(["data", "import", str(src), "--name", "d", "--unsafe-plaintext-dest"],
                     capsys, monkeypatch)
    assert code == 0, out
    code, out = _cli(["registry", "erase", "--subject", "S-1042", "--yes",
                      "--unsafe-plaintext-dest"], capsys, monkeypatch)
    assert code == 0, out

    # The audit secret as Vault holds it (read with the root token, as an auditor would).
    kv = dev_vault.root_client().secrets.kv.v2
    master = Secret(kv.read_secret_version(path=path + "-audit", raise_on_deleted_version=True)
                    ["data"]["data"]["key"])
    tomb_key = applog.derive_tombstone_key(master)
    registry = Registry(ws / "registry.sqlite")
    plain = hashlib.sha256(b"S-1042").hexdigest()
    assert plain.encode() not in (ws / "registry.sqlite").read_bytes()
    log_text = (ws / "audit" / "app.jsonl").read_text()
    assert plain not in log_text and "S-1042" not in log_text
    assert registry.is_erased_subject("S-1042", tomb_key.reveal())
    assert not registry.is_erased_subject("T-7", tomb_key.reveal())
    assert not registry.is_erased_subject("S-1042", hashlib.sha256(b"S-1042").digest())
    result = applog.verify(ws / "audit" / "app.jsonl", master)
    assert result.ok and result.records == 1
    record = json.loads(log_text.splitlines()[0])
    assert record["fields"]["subject_hmac"] == registry.tombstone_tags()[0]
