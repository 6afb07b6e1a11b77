"""`KeyManager`: the workspace key's life in Vault — init, status, crash-safe rotation, open.

The state lives in the KV v2 custom metadata of the key: `{"active": "N"}` normally,
`{"active": "N", "pending": "M"}` while a rotation is between "new version written" and
"new version proven". The workspace opens with the active version, else the pending one, so a
process killed at any step leaves a workspace that opens; the next `rotate` (or `init` for an
interrupted init) finishes or undoes the interrupted step.
Must never: log, print or return to the CLI a passphrase; destroy a version before another one
has been proven to open the workspace.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from entrypoint.errors import ConfigError, SecretMissing, VaultError, WorkspaceError
from entrypoint.secret import Secret
from entrypoint.vault.client import KeyMetadata, VaultClient

log = logging.getLogger(__name__)

# coupling: gocryptfs keeps its wrapped master key in this file (workspace.py's `init_cipher`).
GOCRYPTFS_CONF = "gocryptfs.conf"
# The steps after which the test hook can kill the rotating process (tests/integration/test_keys*).
ROTATE_STEPS = ("after_write", "after_mark_pending", "after_passwd", "after_verify",
                "after_mark_active", "after_destroy")
# ... and the steps of `keys rekey` (entrypoint/workspace/rekey.py).
REKEY_STEPS = ("rekey_after_mark_pending", "rekey_after_init", "rekey_after_mount",
               "rekey_after_copy",
               "rekey_after_swap", "rekey_after_mark_active", "rekey_after_destroy")
CRASH_ENV = "ST_TEST_CRASH_AT"

VersionState = Literal["active", "pending", "retired", "destroyed", "deleted"]


class PassphraseCipher(Protocol):
    """What KeyManager needs from gocryptfs (entrypoint.workspace.gocryptfs.Gocryptfs implements it)."""

    def init_cipher(self, cipher_dir: Path, passphrase: Secret) -> None:
        """Create a new encrypted dir keyed by `passphrase`. Raises WorkspaceError."""
        ...

    def change_passphrase(self, cipher_dir: Path, old: Secret, new: Secret) -> None:
        """Re-wrap the master key from `old` to `new`. Raises WorkspaceError."""
        ...

    def verify_passphrase(self, cipher_dir: Path, passphrase: Secret) -> bool:
        """True when `passphrase` opens the dir (test mount). Raises WorkspaceError otherwise."""
        ...


@dataclass(frozen=True)
class KeyState:
    """Which KV versions the workspace key state machine points at."""

    active: int | None
    pending: int | None
    live: tuple[int, ...]
    current_version: int


@dataclass(frozen=True)
class VersionStatus:
    """One version as `keys status` shows it (never the value)."""

    version: int
    state: VersionState
    created: datetime | None
    age_s: float | None


@dataclass(frozen=True)
class KeyStatus:
    """The key's versions, which is active/pending, and whether the cipher dir exists."""

    versions: tuple[VersionStatus, ...]
    active: int | None
    pending: int | None
    cipher_initialised: bool


@dataclass(frozen=True)
class RotateResult:
    """Old and new active versions after a completed rotation."""

    old_version: int
    new_version: int
    recovered: bool


def crash_at_from_env(env: Mapping[str, str]) -> str | None:
    """TEST HOOK: the rotate step named by ST_TEST_CRASH_AT, validated; None when unset.

    Raises ConfigError for an unknown step name.
    """
    step = env.get(CRASH_ENV, "").strip()
    if not step:
        return None
    if step not in ROTATE_STEPS + REKEY_STEPS:
        raise ConfigError(f"{CRASH_ENV} must be one of: {', '.join(ROTATE_STEPS + REKEY_STEPS)}")
    log.warning("test crash hook armed: this process will SIGKILL itself during rotate")
    return step


class KeyManager:
    """Init, status, rotation and opening of the workspace key.

    All methods raise VaultError subclasses (exit 4) or WorkspaceError (exit 5).
    """

    def __init__(self, vault: VaultClient, workspace_gocryptfs: PassphraseCipher,
                 cipher_dir: Path, *, unsafe_test_crash_at: str | None = None) -> None:
        self._vault = vault
        self._gocryptfs = workspace_gocryptfs
        self._cipher_dir = cipher_dir
        self._crash_at = unsafe_test_crash_at

    def _unsafe_test_crash_hook(self, step: str) -> None:
        """TEST HOOK ONLY: SIGKILL ourselves after `step` to prove crash safety."""
        if self._crash_at == step:
            os.kill(os.getpid(), signal.SIGKILL)

    @property
    def vault(self) -> VaultClient:
        """The logged-in Vault client this manager uses (shared by `keys rekey`)."""
        return self._vault

    def settle(self) -> tuple[KeyState, bool]:
        """Settle an interrupted rotation or rekey (keep the version that opens the cipher dir,
        destroy the others); returns the state and whether anything was settled."""
        self._require_cipher()
        state = self.state()
        if state.pending is not None or set(state.live) - {state.active}:
            return self._recover(state), True
        return state, False

    @property
    def cipher_initialised(self) -> bool:
        """True when the cipher dir holds a gocryptfs config."""
        return (self._cipher_dir / GOCRYPTFS_CONF).is_file()

    def state(self) -> KeyState:
        """The state machine's view of the key. Raises SecretMissing when there is no key."""
        return _state_of(self._vault.key_metadata())

    def init(self) -> int:
        """Create the key (KV v2) and the gocryptfs cipher dir; returns the active version.

        Resumes an init that was killed before it finished. Raises VaultError when a key
        already exists, WorkspaceError when the cipher dir is already initialised.
        """
        try:
            state: KeyState | None = self.state()
        except SecretMissing:
            state = None
        resuming = state is not None and state.active is None and state.pending is not None
        if state is not None and state.live and not resuming:
            raise VaultError("a workspace key already exists in Vault (use `keys rotate`, or "
                             "set ST_VAULT_KEY_PATH for another workspace)")
        if resuming and state is not None and state.pending is not None:
            passphrase, version = self._vault.read_passphrase(state.pending)
        else:
            passphrase = Secret.generate()
            version = self._vault.write_passphrase(
                passphrase, cas=state.current_version if state is not None else 0)
            self._vault.set_key_custom_metadata({"pending": str(version)})
        try:
            if self.cipher_initialised:
                if not (resuming and self._gocryptfs.verify_passphrase(self._cipher_dir,
                                                                       passphrase)):
                    raise WorkspaceError("the cipher dir is already initialised (choose an empty "
                                         "--cipher-dir, or use `keys rotate`)")
            else:
                self._cipher_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._gocryptfs.init_cipher(self._cipher_dir, passphrase)
        finally:
            passphrase.wipe()
        self._vault.set_key_custom_metadata({"active": str(version)})
        self._vault.audit_key(create=True).wipe()
        log.info("workspace key initialised (version %d)", version)
        return version

    def status(self) -> KeyStatus:
        """Versions with their age and role; never a value. Raises SecretMissing when no key."""
        meta = self._vault.key_metadata()
        state = _state_of(meta)
        now = datetime.now(UTC)
        rows = []
        for v in meta.versions:
            kind: VersionState
            if v.destroyed:
                kind = "destroyed"
            elif v.deleted:
                kind = "deleted"
            elif v.version == state.active:
                kind = "active"
            elif v.version == state.pending:
                kind = "pending"
            else:
                kind = "retired"
            age = (now - v.created).total_seconds() if v.created is not None else None
            rows.append(VersionStatus(version=v.version, state=kind, created=v.created, age_s=age))
        return KeyStatus(versions=tuple(rows), active=state.active, pending=state.pending,
                         cipher_initialised=self.cipher_initialised)

    def rotate(self) -> RotateResult:
        """New passphrase → new KV version (pending) → gocryptfs -passwd → test mount → active →
        old version destroyed. Finishes or undoes an interrupted rotation first.

        Raises VaultError/SecretMissing (exit 4) or WorkspaceError (exit 5); on any failure the
        workspace still opens with the active or the pending version.
        """
        self._require_cipher()
        state = self.state()
        recovered = False
        if state.pending is not None or set(state.live) - {state.active}:
            state = self._recover(state)
            recovered = True
        if state.active is None:
            raise SecretMissing("the workspace key has no active version (run `keys init`)")
        old, old_version = self._vault.read_passphrase(state.active)
        new = Secret.generate()
        try:
            new_version = self._vault.write_passphrase(new, cas=state.current_version)
            self._unsafe_test_crash_hook("after_write")
            self._vault.set_key_custom_metadata({"active": str(old_version),
                                                 "pending": str(new_version)})
            self._unsafe_test_crash_hook("after_mark_pending")
            self._gocryptfs.change_passphrase(self._cipher_dir, old, new)
            self._unsafe_test_crash_hook("after_passwd")
            if not self._gocryptfs.verify_passphrase(self._cipher_dir, new):
                raise WorkspaceError("the new key did not open the workspace after re-wrapping "
                                     "(run `keys rotate` again to recover)")
            self._unsafe_test_crash_hook("after_verify")
        finally:
            old.wipe()
            new.wipe()
        self._vault.set_key_custom_metadata({"active": str(new_version)})
        self._unsafe_test_crash_hook("after_mark_active")
        self._vault.destroy_version(old_version)
        self._unsafe_test_crash_hook("after_destroy")
        log.info("workspace key rotated (version %d -> %d)", old_version, new_version)
        return RotateResult(old_version=old_version, new_version=new_version, recovered=recovered)

    def _recover(self, state: KeyState) -> KeyState:
        """Settle an interrupted rotation: keep the version that opens, destroy the rest."""
        if state.pending is None and state.active is not None:
            keep = state.active  # authoritative: gocryptfs is only touched once pending is set
        else:
            keep = self._first_that_opens([v for v in (state.active, state.pending)
                                           if v is not None])
        self._vault.set_key_custom_metadata({"active": str(keep)})
        for version in state.live:
            if version != keep:
                self._vault.destroy_version(version)
        log.info("settled an interrupted key rotation (active version %d)", keep)
        return self.state()

    def open_passphrase(self) -> Secret:
        """The passphrase that opens the workspace: the active version, else the pending one.

        Raises SecretMissing when there is no key, VaultError when no stored version opens it.
        """
        state = self.state()
        if state.active is not None and state.pending is None:
            return self._vault.read_passphrase(state.active)[0]
        candidates = [v for v in (state.active, state.pending) if v is not None]
        version = self._first_that_opens(candidates)
        return self._vault.read_passphrase(version)[0]

    def _first_that_opens(self, versions: list[int]) -> int:
        self._require_cipher()
        for version in versions:
            try:
                passphrase, _ = self._vault.read_passphrase(version)
            except SecretMissing:
                continue
            try:
                if self._gocryptfs.verify_passphrase(self._cipher_dir, passphrase):
                    return version
            finally:
                passphrase.wipe()
        raise VaultError("no key version in Vault opens the workspace (check --cipher-dir; "
                         "restore the key or the cipher dir from backup)")

    def _require_cipher(self) -> None:
        if not self.cipher_initialised:
            raise WorkspaceError("the cipher dir is not initialised (check --cipher-dir, or run "
                                 "`keys init`)")


def _state_of(meta: KeyMetadata) -> KeyState:
    live = tuple(v.version for v in meta.versions if not v.destroyed and not v.deleted)
    try:
        active = int(meta.custom["active"]) if "active" in meta.custom else None
        pending = int(meta.custom["pending"]) if "pending" in meta.custom else None
    except ValueError:
        raise VaultError("the workspace key's state metadata is corrupt (fix custom_metadata "
                         "active/pending)") from None
    if active is None and pending is None and live:
        active = max(live)  # written by hand or an older tool: the newest live version rules
    if active is not None and active not in live:
        active = None
    if pending is not None and pending not in live:
        pending = None
    if not live and not meta.versions:
        raise SecretMissing("no workspace key in Vault (run `secure-trainer keys init`)")
    return KeyState(active=active, pending=pending, live=live,
                    current_version=meta.current_version)
