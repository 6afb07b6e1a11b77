"""`secure-trainer audit verify`: check the app audit log's hash chain and HMACs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from entrypoint.errors import AuditError, ConfigError
from entrypoint.secret import Secret

if TYPE_CHECKING:
    from entrypoint.cli import CommandGroups


def _read_key_stdin() -> Secret:

    raw = sys.stdin.buffer.readline().strip()
    if not raw:
        raise ConfigError("--key-stdin given but no key arrived on standard input")
    return Secret(raw)


def register(root: typer.Typer, groups: "CommandGroups") -> None:
    """Add `audit verify`."""
    del root

    @groups.audit.command("verify")
    def verify_cmd(
        log: Path = typer.Argument(..., help="The app audit log (audit/app.jsonl in the workspace)."),
        key_stdin: bool = typer.Option(False, "--key-stdin",
                                       help="Read the HMAC key (hex) from standard input."),
    ) -> None:
        """Verify every record; exit 6 and name the first broken record when the chain fails."""
        from entrypoint.applog import verify

        if not key_stdin:
            raise ConfigError("give the audit key with --key-stdin (Vault lookup lands with `run`)")
        key = _read_key_stdin()
        try:
            result = verify(log, key)
        finally:
            key.wipe()
        if not result.ok:
            raise AuditError(f"broken at record {result.first_bad_seq}: {result.reason}")
        typer.echo(f"ok: {result.records} records")
