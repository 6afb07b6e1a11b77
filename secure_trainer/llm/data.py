"""Read alpaca/chat JSONL records into conversations with a subject id (no tokenization here).

Alpaca: `instruction` (+ optional `input`, `system`) → user turn, `output` → assistant turn.
Chat: `messages` = [{role: system|user|assistant, content}], ending with an assistant turn.
Each record may carry a pseudonymous subject id (the unit of user-level DP). Errors name the
line number and the reason, never a value or the file path. Never logs record text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from secure_trainer.errors import DataRejected

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: str
    content: str


@dataclass(frozen=True)
class TextRecord:
    """One training conversation and the subject it is about (None when the file has none)."""

    turns: tuple[Turn, ...]
    subject: str | None


def _bad(line: int, why: str) -> DataRejected:
    return DataRejected(f"dataset line {line} is not a valid alpaca or chat record: {why}")


def _str_field(raw: dict[str, object], key: str, line: int, *, required: bool) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _bad(line, f"'{key}' must be a string")
    return value


def parse_record(raw: object, line: int, subject_field: str = "subject") -> TextRecord:
    """One decoded JSON object → TextRecord. Raises DataRejected with the line number."""
    if not isinstance(raw, dict):
        raise _bad(line, "not a JSON object")
    subject_raw = raw.get(subject_field)
    if subject_raw is not None and not isinstance(subject_raw, (str, int)):
        raise _bad(line, "the subject must be a string or an integer")
    subject = None if subject_raw is None else str(subject_raw)
    if "messages" in raw:
        messages = raw["messages"]
        if not isinstance(messages, list) or not messages:
            raise _bad(line, "'messages' must be a non-empty list")
        turns: list[Turn] = []
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise _bad(line, "each message needs a role of system, user or assistant")
            turns.append(Turn(str(message["role"]), _str_field(message, "content", line,
                                                               required=True)))
        if turns[-1].role != "assistant":
            raise _bad(line, "the last message must be the assistant's")
        return TextRecord(turns=tuple(turns), subject=subject)
    if "instruction" in raw and "output" in raw:
        user = _str_field(raw, "instruction", line, required=True)
        extra = _str_field(raw, "input", line, required=False)
        system = _str_field(raw, "system", line, required=False)
        turns = [Turn("system", system)] if system else []
        turns.append(Turn("user", f"{user}\n{extra}" if extra else user))
        turns.append(Turn("assistant", _str_field(raw, "output", line, required=True)))
        return TextRecord(turns=tuple(turns), subject=subject)
    raise _bad(line, "needs 'messages' or 'instruction' and 'output'")


def read_jsonl(path: Path, *, subject_field: str = "subject",
               max_samples: int | None = None) -> list[TextRecord]:
    """All records of a JSONL file (blank lines skipped), at most `max_samples`.

    Raises DataRejected when the file cannot be read, a line is bad, or nothing is left.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise DataRejected("cannot read the dataset (a UTF-8 JSONL file is expected)") from None
    records: list[TextRecord] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            raise _bad(number, "not JSON") from None
        records.append(parse_record(raw, number, subject_field))
        if max_samples is not None and len(records) >= max_samples:
            break
    if not records:
        raise DataRejected("the dataset has no records")
    return records
