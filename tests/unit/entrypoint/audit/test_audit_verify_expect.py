"""`audit verify --expect-last/--manifest`: a log cut off at the end (still a valid chain) fails."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from entrypoint.audit.applog import AppAuditLog
from entrypoint.cli import main
from entrypoint.secret import Secret

KEY = "ab" * 32


def _verify(args: list[str], capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(KEY.encode() + b"\n")))
    code = main(["audit", "verify", *args, "--key-stdin"])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture()
def sealed_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A log like a run's: phases, `sealed` (its seq in the manifest), then teardown records.
    The state dir is the test's own: the machine's journal may hold pending events."""
    monkeypatch.setenv("ST_STATE_DIR", str(tmp_path / "state"))
    log = AppAuditLog(tmp_path / "app.jsonl", Secret(KEY))
    for event in ("policy", "vault_login", "workspace_mounted", "train_end"):
        log.append(event, run_id="r1")
    seq = log.append("sealed", run_id="r1", lora_sha256="0" * 64)
    log.append("teardown", run_id="r1", wiped_files=0)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"run_id": "r1", "audit_seq": seq}))
    return tmp_path / "app.jsonl", manifest


def test_manifest_and_expect_last_pass_on_a_whole_log(
        sealed_log: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    log, manifest = sealed_log
    assert _verify([str(log), "--manifest", str(manifest), "--expect-last", "6"], capsys,
                   monkeypatch) == (0, "ok: 6 records\n")


def test_cut_off_end_is_caught(sealed_log: tuple[Path, Path],
                               capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    log, manifest = sealed_log
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:4]))  # drop `sealed` and `teardown`: still a valid chain
    assert _verify([str(log)], capsys, monkeypatch)[0] == 0
    code, out = _verify([str(log), "--manifest", str(manifest)], capsys, monkeypatch)
    assert code == 6 and out.startswith("error[audit]: the log ends at record 4")
    code, out = _verify([str(log), "--expect-last", "5"], capsys, monkeypatch)
    assert code == 6 and "cut off" in out


def test_manifest_pointing_at_another_record_fails(
        sealed_log: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    log, manifest = sealed_log
    manifest.write_text(json.dumps({"run_id": "r1", "audit_seq": 3}))
    code, out = _verify([str(log), "--manifest", str(manifest)], capsys, monkeypatch)
    assert code == 6 and "not the sealed record" in out
    manifest.write_text(json.dumps({"run_id": "r1"}))
    assert _verify([str(log), "--manifest", str(manifest)], capsys, monkeypatch)[0] == 2
