"""The pre-mount journal: audit events of a run before its workspace (and app log) is open.

Policy decisions (denials included), recovery of a stale run and failures before the mount
(Vault login, key fetch, mount) have no app log to go to. They are written at once, one JSON
line each and fsynced, to `audit-journal.jsonl` in the root-only state dir, and merged into the
app log, in order and exactly once, at the next successful mount: each merged record carries
`journaled: true`, its `journal_id` and the time it happened (`journal_ts`); its chain position
is the merge. A crash mid-merge is finished by the next merge without duplicates (records
already in the log are recognised by `journal_id`).
Must never: follow a symlink in the state dir, journal a field the app log would refuse
(secrets, paths), or drop an entry it could not merge (a malformed line is counted instead).
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any

from entrypoint.audit.applog import AppAuditLog, canonical, check_fields
from entrypoint.errors import AuditError

JOURNAL_NAME = "audit-journal.jsonl"
MERGING_NAME = "audit-journal.merging"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PreMountJournal:
    """The journal in `state_dir` (created 0700 when missing; must be a real, root-only dir)."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir

    def _open_dir(self) -> int:
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._dir, _DIR_FLAGS)
        except OSError:
            raise AuditError("the pre-mount audit journal's state dir is not usable") from None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            os.close(fd)
            # SECURITY: a journal others can write could be stuffed with forged events.
            raise AuditError("the state dir must be owned by us and not group/world-writable")
        return fd

    def append(self, event: str, **fields: Any) -> None:
        """Write one event now (fsynced). Raises AuditError for a bad field or an I/O error."""
        check_fields(fields)
        entry = {"journal_id": uuid.uuid4().hex, "ts": round(time.time(), 3), "event": event,
                 "fields": fields}
        dfd = self._open_dir()
        try:
            fd = os.open(JOURNAL_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                os.write(fd, canonical(entry) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            raise AuditError("the pre-mount audit journal could not be written") from None
        finally:
            os.close(dfd)

    def pending(self) -> int:
        """How many entries wait to be merged (for `audit verify` and status)."""
        dfd = self._open_dir()
        try:
            return sum(len(_read(dfd, name)[0]) for name in (MERGING_NAME, JOURNAL_NAME))
        finally:
            os.close(dfd)

    def merge_into(self, log: AppAuditLog) -> int:
        """Append every journaled entry to `log`, oldest first, exactly once; empty the journal.

        Returns the number of records appended. Raises AuditError when the log cannot take them
        (the journal is then kept for the next merge).
        """
        dfd = self._open_dir()
        try:
            try:
                # A leftover `.merging` is an interrupted merge: finish it before new entries.
                if not _exists(dfd, MERGING_NAME):
                    if not _exists(dfd, JOURNAL_NAME):
                        return 0
                    os.rename(JOURNAL_NAME, MERGING_NAME, src_dir_fd=dfd, dst_dir_fd=dfd)
                    os.fsync(dfd)
            except OSError:
                raise AuditError("the pre-mount audit journal could not be merged") from None
            entries, bad = _read(dfd, MERGING_NAME)
            done = _merged_ids(log)
            count = 0
            for entry in entries:
                if entry["journal_id"] in done:
                    continue
                log.append(entry["event"], **entry["fields"], journaled=True,
                           journal_id=entry["journal_id"], journal_ts=entry["ts"])
                count += 1
            if bad:
                log.append("journal_unreadable", lines=bad)
                count += 1
            try:
                os.unlink(MERGING_NAME, dir_fd=dfd)
                os.fsync(dfd)
            except OSError:
                raise AuditError("the merged pre-mount audit journal could not be removed") \
                    from None
            return count
        finally:
            os.close(dfd)


def _exists(dfd: int, name: str) -> bool:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise AuditError("the pre-mount audit journal is not a regular file")
    return True


def _read(dfd: int, name: str) -> tuple[list[dict[str, Any]], int]:
    """(valid entries, count of malformed lines) of one journal file; ([], 0) when absent."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        return [], 0
    except OSError:
        raise AuditError("the pre-mount audit journal could not be read") from None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read()
    entries: list[dict[str, Any]] = []
    bad = 0
    for line in raw.split(b"\n"):
        if not line:
            continue
        try:
            entry = json.loads(line)
            ok = (isinstance(entry, dict) and isinstance(entry.get("journal_id"), str)
                  and isinstance(entry.get("event"), str) and isinstance(entry.get("fields"), dict))
            if ok:
                check_fields(entry["fields"])
        except (ValueError, AuditError):
            ok = False
        if ok:
            entries.append(entry)
        else:
            bad += 1
    return entries, bad


def _merged_ids(log: AppAuditLog) -> set[str]:
    """`journal_id`s already in the (verified) log: an interrupted merge is not repeated."""
    result = log.verify()
    if not result.ok:
        raise AuditError(f"broken at record {result.first_bad_seq}: {result.reason}")
    ids: set[str] = set()
    try:
        with open(log.path, "rb") as fh:
            for line in fh:
                jid = json.loads(line).get("fields", {}).get("journal_id")
                if isinstance(jid, str):
                    ids.add(jid)
    except FileNotFoundError:
        return ids
    except (OSError, ValueError):
        raise AuditError("the audit log could not be read") from None
    return ids
