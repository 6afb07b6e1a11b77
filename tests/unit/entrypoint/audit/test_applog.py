"""The app audit log detects modified, deleted, reordered and truncated records and wrong keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrypoint.audit.applog import AppAuditLog, derive_audit_key, verify
from entrypoint.errors import AuditError
from entrypoint.secret import Secret

KEY = "k" * 64


def _log(tmp_path: Path, n: int = 5) -> Path:
    path = tmp_path / "audit" / "app.jsonl"
    log = AppAuditLog(path, Secret(KEY))
    for i in range(n):
        log.append("phase", name=f"p{i}", ok=True, n=i)
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_intact_chain_verifies_and_reopens(tmp_path: Path) -> None:
    path = _log(tmp_path)
    assert verify(path, Secret(KEY)).ok and verify(path, Secret(KEY)).records == 5
    AppAuditLog(path, Secret(KEY)).append("more", x=1)
    assert verify(path, Secret(KEY)).records == 6


def test_modified_record_detected(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    rec = json.loads(lines[2])
    rec["fields"]["ok"] = False
    lines[2] = json.dumps(rec, sort_keys=True, separators=(",", ":"))  # canonical, wrong HMAC
    _write(path, lines)
    result = verify(path, Secret(KEY))
    assert not result.ok and result.first_bad_seq == 3 and "HMAC" in result.reason


def test_deleted_record_detected(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    del lines[1]
    _write(path, lines)
    result = verify(path, Secret(KEY))
    assert not result.ok and result.first_bad_seq == 2


def test_reordered_records_detected(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    _write(path, lines)
    result = verify(path, Secret(KEY))
    assert not result.ok and result.first_bad_seq == 2


def test_truncated_and_wrong_key_detected(tmp_path: Path) -> None:
    path = _log(tmp_path)
    assert not verify(path, Secret("x" * 64)).ok
    path.write_bytes(path.read_bytes()[:-10])
    assert not verify(path, Secret(KEY)).ok
    with pytest.raises(AuditError):
        AppAuditLog(path, Secret(KEY))


def test_refuses_paths_and_secrets(tmp_path: Path) -> None:
    log = AppAuditLog(tmp_path / "a.jsonl", Secret(KEY))
    for bad in (tmp_path, "/etc/passwd", Secret("s"), {"nested": "/data/x.png"}):
        with pytest.raises(AuditError):
            log.append("e", value=bad)
    assert not (tmp_path / "a.jsonl").exists()


def test_derived_key_is_stable_and_distinct() -> None:
    a = derive_audit_key(Secret("master-1"))
    assert a == derive_audit_key(Secret("master-1"))
    assert a != derive_audit_key(Secret("master-2"))
    assert "master" not in repr(a)


def test_cli_verify_exit_codes(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = _log(tmp_path)
    cmd = [sys.executable, "-m", "entrypoint.cli", "audit", "verify", str(path), "--key-stdin"]
    ok = subprocess.run(cmd, input=KEY.encode() + b"\n", check=False,
                        capture_output=True, timeout=120)
    assert ok.returncode == 0 and b"ok: 5 records" in ok.stdout
    lines = _lines(path)
    del lines[3]
    _write(path, lines)
    bad = subprocess.run(cmd, input=KEY.encode() + b"\n", check=False,
                         capture_output=True, timeout=120)
    assert bad.returncode == 6 and b"broken at record 4" in bad.stderr
    assert str(tmp_path).encode() not in bad.stderr


def test_two_writers_never_fork_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    a = AppAuditLog(path, Secret(KEY))
    b = AppAuditLog(path, Secret(KEY))
    a.append("a1")
    b.append("b1")  # b's view is stale: it must re-read the tail under the lock
    a.append("a2")
    result = verify(path, Secret(KEY))
    assert result.ok and result.records == 3


def test_deleted_first_and_last_line_truncated_mid_record(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    _write(path, lines[1:])
    assert verify(path, Secret(KEY)).first_bad_seq == 1
    path.write_text("".join(ln + "\n" for ln in lines[:-1]) + lines[-1][:20])
    result = verify(path, Secret(KEY))
    assert not result.ok and result.first_bad_seq == 5 and "truncated" in result.reason


def test_cli_missing_log_and_wrong_key(tmp_path: Path) -> None:
    from entrypoint.cli import main

    assert main(["audit", "verify", str(tmp_path / "none.jsonl"), "--key-stdin"]) == 6
    path = _log(tmp_path)
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "entrypoint.cli", "audit", "verify", str(path), "--key-stdin"]
    bad = subprocess.run(cmd, input=b"y" * 64 + b"\n", check=False,
                         capture_output=True, timeout=120)
    assert bad.returncode == 6 and b"broken at record 1: HMAC mismatch" in bad.stderr
