"""`secure-trainer audit verify [LOG] [--key-stdin]`: check the app audit log's chain and HMACs.

Prints `ok: N records` (exit 0) or fails with `broken at record K: <reason>` (exit 6). The HMAC
key comes from Vault (same env as `keys`) or, with --key-stdin, one hex line on stdin.
Must never: print the key or record contents.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from entrypoint.errors import AuditError, ConfigError
from entrypoint.secret import Secret

if TYPE_CHECKING:
    from entrypoint.cli import CommandGroups


def _read_key_stdin() -> Secret:
    """One line of hex from stdin (tests, ops with the key from a safe)."""
    raw = sys.stdin.buffer.readline().strip()
    if not raw:
        raise ConfigError("--key-stdin given but no key arrived on standard input")
    return Secret(raw)


def _default_log() -> Path:
    mountpoint = os.environ.get("ST_MOUNTPOINT")
    if not mountpoint:
        raise ConfigError("give the log path or set ST_MOUNTPOINT (the open workspace)")
    # coupling: lifecycle AUDIT_LOG / registry_cmd AUDIT_LOG_RELPATH = audit/app.jsonl
    return Path(mountpoint) / "audit" / "app.jsonl"


def _vault_audit_key() -> Secret:
    """The log's HMAC key from Vault (same env as `keys`, docs/vault-and-keys.md)."""
    from entrypoint.vault import VaultClient  # lazy: hvac loads only when Vault is used
    from entrypoint.vault_settings import VaultSettings

    with VaultClient.from_settings(VaultSettings.from_env(os.environ)) as vault:
        vault.login()
        return vault.audit_key()


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `audit verify`."""
    del root

    @groups.audit.command("verify")
    def verify_cmd(
        log: Path | None = typer.Argument(
            None, help="The app audit log (default: audit/app.jsonl under ST_MOUNTPOINT)."),
        key_stdin: bool = typer.Option(False, "--key-stdin",
                                       help="Read the HMAC key (hex) from standard input "
                                            "instead of Vault."),
    ) -> None:
        """Verify every record; exit 6 and name the first broken record when the chain fails."""
        from entrypoint.applog import verify

        path = log if log is not None else _default_log()
        if not path.is_file():
            raise AuditError("no audit log at the given location (is the workspace open?)")
        key = _read_key_stdin() if key_stdin else _vault_audit_key()
        try:
            result = verify(path, key)
        finally:
            key.wipe()
        if not result.ok:
            raise AuditError(f"broken at record {result.first_bad_seq}: {result.reason}")
        typer.echo(f"ok: {result.records} records")
