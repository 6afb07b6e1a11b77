"""The app audit log's head (last sequence number and record hash) anchored in Vault KV v2.

The log lives in the workspace, which has no rollback protection: a cut-off, older or deleted
log is still a valid chain. After each run, erase, expire and key operation the supervisor
writes the head to Vault with check-and-set on the version it read, and `audit verify
--anchored` requires the log to end exactly at that head. A log shorter than its anchor
(truncated, rolled back, deleted), one that differs at the anchored record (replaced) or one
with records past it (ahead of its anchor) fails with AuditError (exit 6).
Must never: write an anchor for a log that does not verify, move an anchor backwards, or put a
record's content or a path in a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import hvac.exceptions as hx
import requests

from entrypoint.audit.applog import AppAuditLog, VerifyResult, verify
from entrypoint.errors import AuditError, ConfigError
from entrypoint.secret import Secret

HEAD_PATH_SUFFIX = "-head"
_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Head:
    """The anchored end of the log: record `seq` (0 = empty log) and that record's hash."""

    seq: int
    hash: str


class HeadStore(Protocol):
    """Where the head is kept (Vault KV v2 in production)."""

    def read(self) -> tuple[Head | None, int]:
        """The anchored head and its store version (None, 0 when never anchored)."""
        ...

    def write(self, head: Head, *, cas: int) -> int:
        """Store `head` only if the store is still at version `cas`; returns the new version."""
        ...


class KvHeadStore:
    """The head as a KV v2 secret `{seq, hash}` at `path` in `mount`, written with cas."""

    def __init__(self, kv_v2: Any, *, mount: str, path: str) -> None:
        self._kv = kv_v2
        self._mount = mount
        self._path = path

    def read(self) -> tuple[Head | None, int]:
        """Raises AuditError when the anchor was deleted or destroyed, or Vault refuses."""
        try:
            meta = self._kv.read_secret_metadata(path=self._path, mount_point=self._mount)
        except hx.InvalidPath:
            return None, 0  # never anchored
        except (hx.VaultError, requests.exceptions.RequestException):
            raise AuditError("the audit anchor could not be read from Vault") from None
        version = int(_get(meta, "data", "current_version"))
        try:
            answer = self._kv.read_secret_version(path=self._path, mount_point=self._mount,
                                                  raise_on_deleted_version=True)
            data = _get(answer, "data", "data")
        except hx.InvalidPath:
            # SECURITY: metadata says it was anchored, but the value is gone: deleted anchor.
            raise AuditError("the audit anchor in Vault was deleted or destroyed") from None
        except (hx.VaultError, requests.exceptions.RequestException):
            raise AuditError("the audit anchor could not be read from Vault") from None
        return _parse(data), version

    def write(self, head: Head, *, cas: int) -> int:
        """Raises AuditError when the version moved (another writer or a replay) or Vault
        refuses the write."""
        try:
            answer = self._kv.create_or_update_secret(
                path=self._path, secret={"seq": str(head.seq), "hash": head.hash}, cas=cas,
                mount_point=self._mount)
        except hx.InvalidRequest:
            raise AuditError("the audit anchor in Vault changed since it was read (check-and-set "
                             "failed); not anchored") from None
        except hx.Forbidden:
            raise AuditError("Vault refused the audit anchor write (the site policy needs "
                             "create/read/update on the audit head path)") from None
        except (hx.VaultError, requests.exceptions.RequestException):
            raise AuditError("the audit anchor could not be written to Vault") from None
        return int(_get(answer, "data", "version"))


def _get(answer: Any, *keys: str) -> Any:
    node = answer
    try:
        for key in keys:
            node = node[key]
    except (KeyError, TypeError, IndexError):
        raise AuditError("Vault's answer for the audit anchor was malformed") from None
    return node


def _parse(data: Mapping[str, Any]) -> Head:
    try:
        seq, digest = int(data["seq"]), str(data["hash"])
    except (KeyError, TypeError, ValueError):
        raise AuditError("the audit anchor in Vault is malformed") from None
    if seq < 0 or not _HASH.match(digest):
        raise AuditError("the audit anchor in Vault is malformed")
    return Head(seq, digest)


def check_against(result: VerifyResult, anchored: Head | None) -> None:
    """Raise AuditError unless the verified log ends exactly at its anchor."""
    if not result.ok:
        raise AuditError(f"broken at record {result.first_bad_seq}: {result.reason}")
    if anchored is None:
        if result.records:
            raise AuditError(f"the log has {result.records} records but Vault holds no anchor "
                             "for it (anchor deleted, or never anchored)")
        return
    if result.records == 0 and anchored.seq > 0:
        raise AuditError(f"the log is missing or empty but Vault anchors record {anchored.seq} "
                         "(log deleted)")
    if result.records < anchored.seq:
        raise AuditError(f"the log ends at record {result.records} but Vault anchors record "
                         f"{anchored.seq} (cut off or rolled back to an older copy)")
    if anchored.seq and result.hashes[anchored.seq - 1] != anchored.hash:
        raise AuditError(f"record {anchored.seq} differs from the one Vault anchors (the log was "
                         "replaced)")
    if result.records > anchored.seq:
        raise AuditError(f"the log runs {result.records - anchored.seq} record(s) past its "
                         f"anchor at record {anchored.seq} (written after the last anchored "
                         "operation)")


def verify_anchored(path: Path, key: Secret, store: HeadStore) -> VerifyResult:
    """Verify the chain and that it ends exactly at Vault's head. Raises AuditError."""
    result = verify(path, key)
    anchored, _ = store.read()
    check_against(result, anchored)
    return result


def anchor_head(path: Path, key: Secret, store: HeadStore) -> Head:
    """Write the verified log's head to the store (cas on the version read) and return it.

    The log must extend the current anchor (same record at the anchored sequence number), so
    an anchor never moves backwards or onto a replaced log. Raises AuditError.
    """
    result = verify(path, key)
    if not result.ok:
        raise AuditError(f"broken at record {result.first_bad_seq}: {result.reason}; "
                         "not anchored")
    return anchor_result(result, store)


def anchor_result(result: VerifyResult, store: HeadStore) -> Head:
    """Anchor the head of an already verified log (see `anchor_head`). Raises AuditError."""
    anchored, version = store.read()
    if anchored is not None and (result.records < anchored.seq or (
            anchored.seq and result.hashes[anchored.seq - 1] != anchored.hash)):
        raise AuditError("the log does not extend its anchor in Vault (cut off, rolled back "
                         "or replaced); not anchored")
    head = Head(result.records, result.head)
    store.write(head, cas=version)
    return head


def head_location(env: Mapping[str, str]) -> tuple[str, str]:
    """(KV v2 mount, path) of the head: ST_VAULT_AUDIT_HEAD_PATH, default `<audit key path>-head`.

    Raises ConfigError (via VaultSettings) for a malformed Vault configuration.
    """
    from entrypoint.vault.settings import VaultSettings

    settings = VaultSettings.from_env(dict(env))
    path = env.get("ST_VAULT_AUDIT_HEAD_PATH", "").strip().strip("/")
    return settings.kv_mount, path or settings.audit_key_path + HEAD_PATH_SUFFIX


def vault_store(vault: Any, env: Mapping[str, str]) -> KvHeadStore:
    """The head store of a logged-in VaultClient.

    coupling: VaultClient has no public KV v2 accessor; `_require()` is its logged-in hvac
    client (entrypoint/vault/client.py). Replace with a public accessor when one exists.
    """
    mount, path = head_location(env)
    return KvHeadStore(vault._require().secrets.kv.v2, mount=mount, path=path)


class AnchorMode:
    """ST_AUDIT_ANCHOR: `required` (a failed anchor write fails the operation), `warn`
    (default: reported, the operation stands) or `off`."""

    REQUIRED = "required"
    WARN = "warn"
    OFF = "off"

    @staticmethod
    def from_env(env: Mapping[str, str]) -> str:
        """The mode; raises AuditError for an unknown value (fail closed, not silently off)."""
        mode = env.get("ST_AUDIT_ANCHOR", AnchorMode.WARN).strip().lower()
        if mode not in (AnchorMode.REQUIRED, AnchorMode.WARN, AnchorMode.OFF):
            raise AuditError("ST_AUDIT_ANCHOR must be required, warn or off")
        return mode


def anchor_after_op(path: Path, key: Secret, store: HeadStore | None, mode: str,
                    warn: Callable[[str], None]) -> Head | None:
    """Anchor the log's head after an operation, as `mode` says.

    `required`: no store, or a failed write, raises AuditError. `warn`: the failure is passed to
    `warn` and None returned (the operation stands). `off`: nothing is written.
    """
    if mode == AnchorMode.OFF:
        return None
    try:
        if store is None:
            raise AuditError("no Vault to anchor the audit head in")
        return anchor_head(path, key, store)
    except AuditError as err:
        if mode == AnchorMode.REQUIRED:
            raise
        warn(f"warning: the audit head was not anchored in Vault: {err}")
        return None


def anchor_run(log: AppAuditLog | None, vault: Any, policy: str,
               warn: Callable[[str], None]) -> Head | None:
    """Anchor a run's log head at its teardown (after its last record, before the unmount).

    Required under the strict profile, else as ST_AUDIT_ANCHOR says (default warn). Nothing
    happens for a run that never opened its log. Raises AuditError when required and failed.
    """
    if log is None:
        return None
    mode = AnchorMode.REQUIRED if policy == "strict" else AnchorMode.from_env(os.environ)
    if mode == AnchorMode.OFF:
        return None
    try:
        store = vault_store(vault, os.environ)
        result = log.verify()
        if not result.ok:
            raise AuditError(f"broken at record {result.first_bad_seq}: {result.reason}")
        return anchor_result(result, store)
    except (AuditError, ConfigError) as err:
        if mode == AnchorMode.REQUIRED:
            raise AuditError(f"the run's audit head could not be anchored in Vault: {err}") \
                from None
        warn(f"warning: the audit head was not anchored in Vault: {err}")
        return None
