"""`secure-trainer keys init|status|rotate|rekey`: the workspace key in Vault and its gocryptfs dir.

Vault settings come from the environment (see docs/vault-and-keys.md); the cipher dir from
`--cipher-dir` or ST_CIPHER_DIR. An owned Vault token is revoked when the command ends.
`rotate` and `rekey` are audited: their outcome (versions and counts, or the error type) goes at
once to the root-only pre-mount journal in the state dir (ST_STATE_DIR), which the next `run`
merges into the workspace's app log; a record that cannot be written fails the command (exit 6).
Must never: print a passphrase or token (status shows versions, roles and ages only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from entrypoint.vault.client import VaultClient
from entrypoint.vault.settings import VaultSettings
from entrypoint.workspace.keys import KeyManager, KeyStatus, crash_at_from_env

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups

_CIPHER_HELP = "The gocryptfs cipher (encrypted) directory of the workspace."
_CIPHER_OPT = typer.Option(..., "--cipher-dir", envvar="ST_CIPHER_DIR", help=_CIPHER_HELP)


@contextmanager
def _key_manager(cipher_dir: Path) -> Iterator[KeyManager]:
    """Settings from env, Vault login, KeyManager; revokes an owned token on the way out."""
    from entrypoint.workspace.gocryptfs import (
        Gocryptfs,  # coupling: E's gocryptfs wrapper (workspace.py)
    )

    env = os.environ
    settings = VaultSettings.from_env(env)
    crash_at = crash_at_from_env(env)
    with VaultClient.from_settings(settings) as vault:
        vault.login()
        yield KeyManager(vault, Gocryptfs(), cipher_dir, unsafe_test_crash_at=crash_at)


@contextmanager
def _audited(operation: str) -> Iterator[None]:
    """Journal the failure of a key `operation` (its error type only) before re-raising."""
    from entrypoint.errors import SecureTrainerError

    try:
        yield
    except SecureTrainerError as exc:
        try:
            _journal("key_operation_failed", operation=operation, error=type(exc).__name__,
                     exit_code=exc.exit_code)
        except SecureTrainerError:
            pass  # the operation's own error is the one to report
        raise


def _journal(event: str, **fields: object) -> None:
    """One record in the pre-mount journal (merged into the app log at the next mount).
    Raises AuditError when it cannot be written."""
    from entrypoint.audit.journal import PreMountJournal
    from entrypoint.workspace.gocryptfs import state_dir

    PreMountJournal(state_dir()).append(event, **fields)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


def _status_json(st: KeyStatus) -> str:
    return json.dumps({
        "active": st.active, "pending": st.pending, "cipher_initialised": st.cipher_initialised,
        "versions": [{"version": v.version, "state": v.state, "age_s": v.age_s,
                      "created": v.created.isoformat() if v.created else None}
                     for v in st.versions],
    }, indent=2)


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `keys init`, `keys status`, `keys rotate` and `keys rekey`."""
    del root

    @groups.keys.command("init")
    def init_cmd(
        cipher_dir: Path = _CIPHER_OPT,
    ) -> None:
        """Create a random workspace passphrase in Vault and the encrypted cipher dir."""
        with _key_manager(cipher_dir) as keys:
            version = keys.init()
        typer.echo(f"workspace key created (version {version}); cipher dir initialised")

    @groups.keys.command("status")
    def status_cmd(
        cipher_dir: Path = _CIPHER_OPT,
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Show key versions, their age and which is active or pending (never a value)."""
        with _key_manager(cipher_dir) as keys:
            st = keys.status()
        if as_json:
            typer.echo(_status_json(st))
            return
        typer.echo(f"cipher dir: {'initialised' if st.cipher_initialised else 'NOT initialised'}")
        if st.pending is not None:
            typer.echo("an interrupted rotation is pending: run `secure-trainer keys rotate`")
        typer.echo(f"{'version':>7}  {'state':<9}  age")
        for v in st.versions:
            typer.echo(f"{v.version:>7}  {v.state:<9}  {_age(v.age_s)}")

    @groups.keys.command("rotate")
    def rotate_cmd(
        cipher_dir: Path = _CIPHER_OPT,
    ) -> None:
        """New passphrase in Vault, re-wrap the gocryptfs master key, verify, destroy the old."""
        with _audited("rotate"), _key_manager(cipher_dir) as keys:
            result = keys.rotate()
        _journal("key_rotated", old_version=result.old_version,
                 new_version=result.new_version, recovered=result.recovered)
        if result.recovered:
            typer.echo("settled an interrupted rotation first")
        typer.echo(f"workspace key rotated: version {result.old_version} -> {result.new_version}")

    @groups.keys.command("rekey")
    def rekey_cmd(cipher_dir: Path = _CIPHER_OPT) -> None:
        """Crypto-shred: move the closed workspace into a fresh cipher dir with a new master key,
        swap it in atomically, destroy the old passphrase version (old backups stop opening)."""
        from entrypoint.workspace.gocryptfs import Gocryptfs
        from entrypoint.workspace.rekey import Rekeyer

        with _audited("rekey"), _key_manager(cipher_dir) as keys:
            result = Rekeyer(keys, Gocryptfs(), cipher_dir,
                             unsafe_test_crash_at=crash_at_from_env(os.environ)).rekey()
        _journal("rekey", old_version=result.old_version, new_version=result.new_version,
                 files=result.files, recovered=result.recovered)
        if result.recovered:
            typer.echo("settled an interrupted rotation or rekey first")
        typer.echo(f"workspace rekeyed: new master key, files={result.files}; key version "
                   f"{result.old_version} destroyed, {result.new_version} active")
