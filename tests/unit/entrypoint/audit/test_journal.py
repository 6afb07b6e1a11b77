"""The pre-mount journal: events written at once to the state dir, merged into the app log in
order and exactly once (also after a merge cut short), nothing dropped silently."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from entrypoint.audit.applog import AppAuditLog, verify
from entrypoint.audit.journal import JOURNAL_NAME, MERGING_NAME, PreMountJournal
from entrypoint.errors import AuditError
from entrypoint.secret import Secret

KEY = "a1" * 32


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_events_are_on_disk_at_once_and_merge_in_order(tmp_path: Path) -> None:
    state = tmp_path / "state"
    journal = PreMountJournal(state)
    journal.append("policy_denied", run_id="r1", phase="pre-mount", rules=["x.y"])
    assert (state / JOURNAL_NAME).stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700
    journal.append("run_failed", run_id="r1", error="VaultUnreachable")
    assert journal.pending() == 2
    log = AppAuditLog(tmp_path / "app.jsonl", Secret(KEY))
    log.append("before", run_id="r0")
    assert journal.merge_into(log) == 2
    records = _records(tmp_path / "app.jsonl")
    assert [r["event"] for r in records] == ["before", "policy_denied", "run_failed"]
    assert all(r["fields"]["journaled"] for r in records[1:])  # type: ignore[index]
    assert records[1]["fields"]["run_id"] == "r1"  # type: ignore[index]
    assert verify(tmp_path / "app.jsonl", Secret(KEY)).ok
    assert not (state / JOURNAL_NAME).exists() and journal.pending() == 0
    assert journal.merge_into(log) == 0


def test_interrupted_merge_is_finished_without_duplicates(tmp_path: Path) -> None:
    journal = PreMountJournal(tmp_path / "state")
    for i in range(3):
        journal.append("policy", run_id="r1", n=i)
    os.rename(tmp_path / "state" / JOURNAL_NAME, tmp_path / "state" / MERGING_NAME)
    first = json.loads((tmp_path / "state" / MERGING_NAME).read_text().splitlines()[0])
    log = AppAuditLog(tmp_path / "app.jsonl", Secret(KEY))
    # The crash happened after the first entry reached the log.
    log.append("policy", **first["fields"], journaled=True, journal_id=first["journal_id"],
               journal_ts=first["ts"])
    journal.append("later", run_id="r2")  # a new entry written after the crash
    assert journal.merge_into(log) == 2  # the two left of the interrupted merge
    assert journal.merge_into(log) == 1  # then the newer journal
    events = [(r["event"], r["fields"].get("n")) for r in _records(tmp_path / "app.jsonl")]  # type: ignore[union-attr]
    assert events == [("policy", 0), ("policy", 1), ("policy", 2), ("later", None)]


def test_malformed_lines_are_counted_not_dropped(tmp_path: Path) -> None:
    journal = PreMountJournal(tmp_path / "state")
    journal.append("policy", run_id="r1")
    with open(tmp_path / "state" / JOURNAL_NAME, "ab") as fh:
        fh.write(b'{"event": "x"}\nnot json\n')
    log = AppAuditLog(tmp_path / "app.jsonl", Secret(KEY))
    assert journal.merge_into(log) == 2
    last = _records(tmp_path / "app.jsonl")[-1]
    assert last["event"] == "journal_unreadable" and last["fields"]["lines"] == 2  # type: ignore[index]


def test_refuses_unsafe_fields_and_state_dirs(tmp_path: Path) -> None:
    journal = PreMountJournal(tmp_path / "state")
    with pytest.raises(AuditError):
        journal.append("x", where="/data/secret/file.png")
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state").chmod(0o777)
    with pytest.raises(AuditError):
        journal.append("x", ok=True)
    (tmp_path / "state").chmod(0o700)
    (tmp_path / "state" / JOURNAL_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AuditError):
        journal.append("x", ok=True)
    assert not (tmp_path / "elsewhere").exists()


def test_audit_verify_reports_events_waiting_in_the_journal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from entrypoint.cli import main

    AppAuditLog(tmp_path / "app.jsonl", Secret(KEY)).append("x")
    monkeypatch.setenv("ST_STATE_DIR", str(tmp_path / "state"))
    PreMountJournal(tmp_path / "state").append("policy_denied", run_id="r9")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(KEY.encode() + b"\n")))
    assert main(["audit", "verify", str(tmp_path / "app.jsonl"), "--key-stdin"]) == 0
    out = capsys.readouterr().out
    assert "ok: 1 records" in out and "1 pre-mount event(s) wait" in out
