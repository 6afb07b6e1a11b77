"""Sanitize a JSONL text corpus (alpaca or chat) before it enters the workspace.

Per record: parse (bad lines are rejected, counted as `invalid`), keep only the known fields
(instruction/input/output/system or messages, plus the subject), scan every text field with
the caption PII recognizers (privacy/pii.py) and the deny-list, then redact, reject or only
count by `PiiMode`; a subject id that itself holds PII is always rejected (it must be a
pseudonym). Exact duplicates (same sanitized record, subject included) are dropped.
Counts by reason and by PII type only: never a value, a line of text or a path.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from secure_trainer.errors import DataRejected
from secure_trainer.llm.data import parse_record
from secure_trainer.privacy.pii import PiiMode, PiiScanner, redact_text

_ALPACA_TEXT = ("instruction", "input", "output", "system")


@dataclass
class TextImportReport:
    """What happened to the records (counts only)."""

    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    """Reason → records dropped: invalid, duplicate, pii, subject_pii."""
    pii_found: Counter[str] = field(default_factory=Counter)
    """PII type → findings (in kept and rejected records)."""
    redacted_records: int = 0
    subjects: int = 0
    without_subject: int = 0

    def summary(self) -> dict[str, object]:
        """A JSON-ready dict of the counts."""
        return {"records_kept": self.kept, "rejected": dict(sorted(self.rejected.items())),
                "pii_found": dict(sorted(self.pii_found.items())),
                "records_redacted": self.redacted_records, "subjects": self.subjects,
                "records_without_subject": self.without_subject}


def _normalise(raw: dict[str, object], subject_field: str) -> dict[str, object]:
    """Only the fields training uses, in a fixed layout."""
    out: dict[str, object]
    if "messages" in raw:
        messages = raw["messages"]
        assert isinstance(messages, list)  # parse_record checked the shape
        out = {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    else:
        out = {k: raw[k] for k in _ALPACA_TEXT if isinstance(raw.get(k), str)}
    if raw.get(subject_field) is not None:
        out["subject"] = str(raw[subject_field])
    return out


def _texts(record: dict[str, object]) -> list[tuple[dict[str, object], str]]:
    """(holder, key) of every text field of a normalised record."""
    if "messages" in record:
        messages = record["messages"]
        assert isinstance(messages, list)
        return [(m, "content") for m in messages]
    return [(record, k) for k in _ALPACA_TEXT if k in record]


def sanitize_lines(lines: Iterable[str], *, mode: PiiMode, deny_list: Iterable[str] = (),
                   subject_field: str = "subject") -> tuple[list[dict[str, object]],
                                                           TextImportReport]:
    """The kept, sanitized records and the report (the caller decides whether none is ok)."""
    scanner = PiiScanner(deny_list=deny_list)
    report = TextImportReport()
    seen: set[str] = set()
    subjects: set[str] = set()
    kept: list[dict[str, object]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            parse_record(raw, number, subject_field)
        except (json.JSONDecodeError, DataRejected):
            report.rejected["invalid"] += 1
            continue
        record = _normalise(raw, subject_field)
        subject = record.get("subject")
        if isinstance(subject, str) and scanner.scan(subject):
            report.rejected["subject_pii"] += 1
            continue
        found = False
        for holder, key in _texts(record):
            text = str(holder[key])
            findings = scanner.scan(text)
            report.pii_found.update(f.type.value for f in findings)
            if findings and mode is PiiMode.REDACT:
                holder[key] = redact_text(text, findings)
            found = found or bool(findings)
        if found and mode is PiiMode.REJECT:
            report.rejected["pii"] += 1
            continue
        canonical = json.dumps(record, sort_keys=True, ensure_ascii=False)
        if canonical in seen:
            report.rejected["duplicate"] += 1
            continue
        seen.add(canonical)
        report.redacted_records += int(found and mode is PiiMode.REDACT)
        if isinstance(subject, str):
            subjects.add(subject)
        else:
            report.without_subject += 1
        kept.append(record)
    report.kept = len(kept)
    report.subjects = len(subjects)
    return kept, report


def to_jsonl(records: Iterable[dict[str, object]]) -> bytes:
    """The records as UTF-8 JSONL."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
