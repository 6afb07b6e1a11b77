"""Text import: PII redacted / rejected / reported with counts by type, exact duplicates and
invalid lines dropped with counts by reason, unknown fields dropped, PII in a subject id refused."""

from __future__ import annotations

import json

from secure_trainer.llm.text_import import sanitize_lines, to_jsonl
from secure_trainer.privacy.pii import PiiMode

LINES = [
    json.dumps({"instruction": "q1", "input": "mail ana@example.org", "output": "a1",
                "subject": "s1", "source_file": "/secret/path.txt"}),
    json.dumps({"messages": [{"role": "user", "content": "call +44 20 7946 0958"},
                             {"role": "assistant", "content": "ok"}], "subject": "s2"}),
    json.dumps({"instruction": "q2", "output": "a2", "subject": "s1"}),
    json.dumps({"instruction": "q2", "output": "a2", "subject": "s1"}),
    "not json",
    json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
    json.dumps({"instruction": "q3", "output": "a3", "subject": "bob@example.org"}),
    json.dumps({"instruction": "about Project Falcon", "output": "a4"}),
    "",
]


def test_redact_mode() -> None:
    kept, report = sanitize_lines(LINES, mode=PiiMode.REDACT, deny_list=["project falcon"])
    assert report.summary() == {
        "records_kept": 4, "rejected": {"duplicate": 1, "invalid": 2, "subject_pii": 1},
        "pii_found": {"DENYLIST": 1, "EMAIL": 1, "PHONE": 1}, "records_redacted": 3,
        "subjects": 2, "records_without_subject": 1}
    assert kept[0] == {"instruction": "q1", "input": "mail <EMAIL>", "output": "a1",
                       "subject": "s1"}  # the unknown field is gone
    assert kept[1]["messages"][0]["content"] == "call <PHONE>"  # type: ignore[index]
    assert kept[3]["instruction"] == "about <DENYLIST>"
    blob = to_jsonl(kept).decode()
    assert "ana@example.org" not in blob and "7946" not in blob and "/secret" not in blob


def test_reject_and_report_modes() -> None:
    kept, report = sanitize_lines(LINES, mode=PiiMode.REJECT, deny_list=["project falcon"])
    assert report.kept == len(kept) == 1 and report.rejected["pii"] == 3
    kept, report = sanitize_lines(LINES, mode=PiiMode.REPORT)
    assert report.kept == 4 and report.redacted_records == 0
    assert "ana@example.org" in str(kept[0]["input"])
