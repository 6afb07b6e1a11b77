"""The reviewed allow-list of triaged advisories (TOML): id, package, reason, expiry.

Must never: accept an entry without a reason or expiry, let an expired entry suppress
anything (it is an error that fails the scan until someone reviews it again), or match an
entry by package alone.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path

from supply.errors import InputError
from supply.osv_db import normalize_name

_FIELDS = {"id", "package", "reason", "expires"}


@dataclass(frozen=True)
class Allowed:
    """One triaged advisory for one package, valid until `expires` (inclusive)."""

    id: str
    package: str
    reason: str
    expires: dt.date


def load(path: Path) -> list[Allowed]:
    """Parse `[[allow]]` tables; InputError on any missing, unknown or mistyped field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise InputError(f"allow-list {path.name}: unreadable") from None
    unknown = set(data) - {"allow"}
    if unknown:
        raise InputError(f"allow-list {path.name}: unknown top-level key(s)")
    out = []
    for number, entry in enumerate(data.get("allow", []), 1):
        if not isinstance(entry, dict) or set(entry) != _FIELDS:
            raise InputError(f"allow-list {path.name}: entry {number} needs exactly "
                             f"{', '.join(sorted(_FIELDS))}")
        texts = [entry["id"], entry["package"], entry["reason"]]
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise InputError(f"allow-list {path.name}: entry {number} has an empty field")
        # A TOML date (expires = 2027-01-31), not a string: the parser checks the calendar.
        if type(entry["expires"]) is not dt.date:
            raise InputError(f"allow-list {path.name}: entry {number} expires is not a date")
        out.append(Allowed(entry["id"], entry["package"], entry["reason"], entry["expires"]))
    return out


def expired(entries: list[Allowed], today: dt.date) -> list[Allowed]:
    """Entries past their expiry date: each one fails the scan."""
    return [e for e in entries if e.expires < today]


def covers(entry: Allowed, ecosystem: str, package: str, ids: set[str]) -> bool:
    """True when the entry names this package and one of the finding's ids or aliases."""
    return (entry.id in ids
            and normalize_name(ecosystem, entry.package) == normalize_name(ecosystem, package))
