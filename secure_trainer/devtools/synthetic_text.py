"""A small synthetic instruction corpus for tests and demos: JSONL in the alpaca and chat formats.

Every record carries a pseudonymous `subject` id (several records per subject, the unit of
user-level DP); a known fraction plants personal data (e-mail, phone, IBAN in well-known
example formats) so the PII scan has something to find, and one record is an exact duplicate.
The answers are short and templated so a tiny model learns them in a few steps.
Deterministic (seeded); writes only below the folder it is given; never touches real data.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

ALPACA_FILE = "alpaca.jsonl"
CHAT_FILE = "chat.jsonl"

_COLOURS = ("red", "blue", "green", "yellow", "black", "white")
_CITIES = ("paris", "lima", "oslo", "cairo", "delhi", "quito")
# Example-only personal data: reserved example domain, the ISO example IBAN, a UK drama number.
_PII = (
    "my email address is {name}@example.org",
    "call me on +44 20 7946 0958",
    "my IBAN is GB82 WEST 1234 5698 7654 32",
)
_NAMES = ("ana", "ben", "chen", "dora", "emil", "fatma", "gita", "hugo", "ines", "jon")


@dataclass(frozen=True)
class TextCorpusSummary:
    """Counts only (safe to print)."""

    subjects: int
    records: int
    with_pii: int
    duplicates: int


_PETS = ("cat", "dog", "parrot", "rabbit", "goldfish", "turtle")
_JOBS = ("nurse", "lawyer", "baker", "pilot", "teacher", "farmer")


def _qa(rng: random.Random, name: str, attribute: int) -> tuple[str, str]:
    # One fixed fact per (subject, attribute): a subject's records never contradict each other.
    if attribute == 0:
        return (f"what is the favourite colour of {name}?",
                f"the favourite colour of {name} is {rng.choice(_COLOURS)}.")
    if attribute == 1:
        return f"where does {name} live?", f"{name} lives in {rng.choice(_CITIES)}."
    if attribute == 2:
        return f"which pet does {name} have?", f"{name} has a {rng.choice(_PETS)}."
    return f"what is the job of {name}?", f"{name} works as a {rng.choice(_JOBS)}."


def make_records(*, subjects: int = 8, per_subject: int = 3, pii_every: int = 5,
                 seed: int = 0) -> list[dict[str, object]]:
    """Alpaca-format records (`instruction`, `input`, `output`, `subject`), one duplicate last.

    A subject's records ask about its four facts in turn (more than four records per subject
    repeat them); every `pii_every`-th record gets one planted PII sentence in its `input`.
    """
    rng = random.Random(seed)
    records: list[dict[str, object]] = []
    for s in range(subjects):
        subject = f"subj-{s:03d}"
        name = _NAMES[s % len(_NAMES)]
        facts = [_qa(rng, name, a) for a in range(4)]
        for j in range(per_subject):
            instruction, output = facts[j % len(facts)]
            extra = ""
            if (len(records) + 1) % pii_every == 0:
                extra = rng.choice(_PII).format(name=name)
            records.append({"instruction": instruction, "input": extra, "output": output,
                            "subject": subject})
    if records:
        records.append(dict(records[0]))  # an exact duplicate for the importer to drop
    return records


def to_chat(record: dict[str, object]) -> dict[str, object]:
    """The same record in the chat format (`messages` with roles, plus `subject`)."""
    user = str(record["instruction"])
    if record.get("input"):
        user = f"{user}\n{record['input']}"
    return {"messages": [{"role": "system", "content": "answer briefly."},
                         {"role": "user", "content": user},
                         {"role": "assistant", "content": str(record["output"])}],
            "subject": record["subject"]}


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def make_text_dataset(out: Path, *, subjects: int = 8, per_subject: int = 3,
                      seed: int = 0) -> TextCorpusSummary:
    """Write `alpaca.jsonl` and `chat.jsonl` (the same records) into `out`; return counts.

    Raises OSError when `out` is not writable (the CLI translates it).
    """
    out.mkdir(parents=True, exist_ok=True)
    records = make_records(subjects=subjects, per_subject=per_subject, seed=seed)
    _write_jsonl(out / ALPACA_FILE, records)
    _write_jsonl(out / CHAT_FILE, [to_chat(r) for r in records])
    distinct = {json.dumps(r, sort_keys=True) for r in records}
    return TextCorpusSummary(subjects=subjects, records=len(records),
                             with_pii=sum(1 for r in records if r["input"]),
                             duplicates=len(records) - len(distinct))
