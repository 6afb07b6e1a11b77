"""The app audit log: hash-chained, HMAC-keyed JSONL inside the encrypted workspace.

Each record holds `seq`, `ts`, `event`, `fields`, `prev` (the previous record's hash) and
`hmac` = HMAC-SHA256(key, canonical JSON of the record without `hmac`). A modified, deleted,
reordered or truncated record breaks the chain at a known sequence number.
SECURITY: never accepts a secret, a Path or an absolute path as a field value.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from entrypoint.errors import AuditError
from entrypoint.secret import Secret

GENESIS = "0" * 64
_HKDF_INFO = b"secure-trainer audit v1"
_TOMBSTONE_INFO = b"secure-trainer tombstone v1"


def _hkdf(master: Secret, info: bytes) -> Secret:
    prk = hmac.new(b"secure-trainer", bytes(master.reveal()), hashlib.sha256).digest()
    okm = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
    return Secret(okm.hex())


def derive_audit_key(master: Secret) -> Secret:
    """HKDF-SHA256 (extract+expand, one block) of a Vault-held secret into the log's HMAC key."""
    return _hkdf(master, _HKDF_INFO)


def derive_tombstone_key(master: Secret) -> Secret:
    """The key of tombstone subject tags: HKDF of the Vault-held audit secret under its own
    label, so a tag is never an HMAC made with the log key itself."""
    return _hkdf(master, _TOMBSTONE_INFO)


def _check_value(name: str, value: Any) -> None:
    """SECURITY: refuse values that could carry key material or data paths."""
    if isinstance(value, (Secret, PurePath, bytes, bytearray)):
        raise AuditError(f"audit field '{name}' has a type that may not be logged")
    if isinstance(value, str) and value.startswith("/"):
        raise AuditError(f"audit field '{name}' looks like an absolute path; log a hash instead")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_value(f"{name}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_value(name, v)


def check_fields(fields: dict[str, Any]) -> None:
    """Raise AuditError for a field value that may not be logged (see `_check_value`)."""
    for name, value in fields.items():
        _check_value(name, value)


def canonical(record: dict[str, Any]) -> bytes:
    """The one serialisation of a record: sorted keys, no whitespace, ASCII only."""
    return _canonical(record)


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(key: Secret, body: dict[str, Any]) -> str:
    return hmac.new(bytes(key.reveal()), _canonical(body), hashlib.sha256).hexdigest()


def _record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(record)).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `verify`: `first_bad_seq` is None when the whole chain holds."""

    ok: bool
    records: int
    first_bad_seq: int | None = None
    reason: str = ""
    head: str = GENESIS
    """Hash of the last good record (GENESIS for an empty log): the value the anchor holds."""
    hashes: tuple[str, ...] = ()
    """Hash of every good record, in order (record N's hash is `hashes[N - 1]`)."""


def _read_raw_lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError:
        raise AuditError("the audit log could not be read") from None
    return data.split(b"\n")


class _DuplicateKey(ValueError):
    """A JSON object named one key twice (first-wins and last-wins parsers would disagree)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_record(raw: bytes) -> dict[str, Any]:
    """One log line as a record, only when the line is byte for byte its canonical form.

    SECURITY: the HMAC covers the canonical serialisation of the parsed record, so a line with
    a duplicated key, reordered keys or other whitespace would verify while a downstream
    parser reads something else. Raises ValueError for anything but the canonical bytes.
    """
    record = json.loads(raw, object_pairs_hook=_no_duplicates)
    if not isinstance(record, dict):
        raise ValueError("a record must be a JSON object")  # noqa: TRY004 (caught as ValueError)
    if _canonical(record) != raw:
        raise ValueError("the line is not the canonical serialisation of its record")
    return record


def verify(path: Path, key: Secret) -> VerifyResult:
    """Check every record's HMAC, sequence and chain link; report the first broken record."""
    lines = _read_raw_lines(path)
    if lines and lines[-1] == b"":
        lines = lines[:-1]
    elif lines:
        return VerifyResult(False, len(lines) - 1, len(lines), "last record is truncated")
    prev = GENESIS
    hashes: list[str] = []
    for i, line in enumerate(lines, start=1):
        try:
            record = parse_record(line)
        except _DuplicateKey:
            return VerifyResult(False, i - 1, i, "record names a key twice", prev)
        except ValueError:
            return VerifyResult(False, i - 1, i, "record is not valid canonical JSON", prev)
        if "hmac" not in record:
            return VerifyResult(False, i - 1, i, "record has no hmac", prev)
        mac = record.pop("hmac")
        if not hmac.compare_digest(str(mac), _mac(key, record)):
            return VerifyResult(False, i - 1, i, "HMAC mismatch (record modified or wrong key)",
                                prev)
        if record.get("seq") != i:
            return VerifyResult(False, i - 1, i, "sequence gap (record deleted or reordered)",
                                prev)
        if record.get("prev") != prev:
            return VerifyResult(False, i - 1, i, "chain link broken (record deleted or reordered)",
                                prev)
        record["hmac"] = mac
        prev = _record_hash(record)
        hashes.append(prev)
    return VerifyResult(True, len(lines), head=prev, hashes=tuple(hashes))


class AppAuditLog:
    """Append-only writer of the hash-chained log (one writer process at a time)."""

    def __init__(self, path: Path, key: Secret) -> None:
        self._path = path
        self._key = key
        self._seq, self._prev = self._tail()
        self._size = self._current_size()

    def _current_size(self) -> int:
        try:
            return self._path.stat().st_size
        except FileNotFoundError:
            return 0
        except OSError:
            raise AuditError("the audit log could not be read") from None

    def _tail(self) -> tuple[int, str]:
        result = verify(self._path, self._key)
        if not result.ok:
            # SECURITY: fail closed; never extend a chain that no longer verifies.
            raise AuditError(f"the audit log is broken at record {result.first_bad_seq}: "
                             f"{result.reason}; run `secure-trainer audit verify`")
        return result.records, result.head

    @property
    def path(self) -> Path:
        """Where the log is (inside the workspace)."""
        return self._path

    def verify(self) -> VerifyResult:
        """Verify the whole log as it is on disk now (for anchoring its head)."""
        return verify(self._path, self._key)

    def append(self, event: str, **fields: Any) -> int:
        """Write one record; returns its sequence number. Raises AuditError on bad fields."""
        for name, value in fields.items():
            _check_value(name, value)
        body: dict[str, Any] = {"seq": self._seq + 1, "ts": round(time.time(), 3),
                                "event": event, "fields": fields, "prev": self._prev}
        record = dict(body, hmac=_mac(self._key, body))
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            raise AuditError("the audit log could not be written") from None
        try:
            # Another writer (a second process on the same workspace) may have appended since
            # our last record: lock, and re-read the tail if the file grew (no forked chain).
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size != self._size:
                self._seq, self._prev = self._tail()
                body.update(seq=self._seq + 1, prev=self._prev)
                record = dict(body, hmac=_mac(self._key, body))
            line = _canonical(record) + b"\n"
            os.write(fd, line)
            os.fsync(fd)
            self._size = os.fstat(fd).st_size
        except OSError:
            raise AuditError("the audit log could not be written") from None
        finally:
            os.close(fd)  # closing releases the flock
        self._seq += 1
        self._prev = _record_hash(record)
        return self._seq
