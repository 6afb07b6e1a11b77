"""`secure-trainer audit verify [LOG] [--key-stdin] [--expect-last N] [--manifest F] [--anchored]`.

Checks the app audit log's chain and HMACs. Prints `ok: N records` (exit 0) or fails with
`broken at record K: <reason>` (exit 6). A log cut off after a record is still a valid (shorter)
chain; `--expect-last N` (the log must reach record N) and `--manifest` (a run manifest's
`audit_seq` must be that run's `sealed` record) catch that; `--anchored` compares the log with
the head anchored in Vault (entrypoint/audit/anchor.py) and also catches rollback to an older
copy and deletion. The HMAC key comes from Vault (same
env as `keys`) or, with --key-stdin, one hex line on stdin.
Must never: print the key or record contents.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from entrypoint.errors import AuditError, ConfigError
from entrypoint.secret import Secret

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups


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
    from entrypoint.vault.client import VaultClient  # lazy: hvac loads only when Vault is used
    from entrypoint.vault.settings import VaultSettings

    with VaultClient.from_settings(VaultSettings.from_env(os.environ)) as vault:
        vault.login()
        return vault.audit_key()


def _vault_head() -> object:
    """The anchored head (or None) from Vault KV v2 (same env as `keys`)."""
    from entrypoint.audit.anchor import vault_store
    from entrypoint.vault.client import VaultClient
    from entrypoint.vault.settings import VaultSettings

    with VaultClient.from_settings(VaultSettings.from_env(os.environ)) as vault:
        vault.login()
        head, _ = vault_store(vault, os.environ).read()
        return head


def _journal_pending() -> int:
    """Entries of the pre-mount journal not yet merged (0 when there is no state dir)."""
    from entrypoint.audit.journal import PreMountJournal
    from entrypoint.workspace.gocryptfs import state_dir

    directory = state_dir(dict(os.environ))
    if not directory.is_dir():
        return 0
    try:
        return PreMountJournal(directory).pending()
    except AuditError:
        return 0  # not ours to read (another user's state dir): nothing to report


def _manifest_seq(manifest: Path) -> tuple[int, str]:
    """(audit_seq, run_id) of a run manifest. Raises ConfigError when it has none."""
    try:
        data = json.loads(manifest.read_text())
        return int(data["audit_seq"]), str(data["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError("the manifest is unreadable or records no audit_seq") from None


def _check_sealed(path: Path, seq: int, run_id: str) -> None:
    """Record `seq` of the (verified) log must be the `sealed` record of `run_id`."""
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").split("\n") if ln]
    record = json.loads(lines[seq - 1])
    if record.get("event") != "sealed" or record.get("fields", {}).get("run_id") != run_id:
        raise AuditError(f"record {seq} is not the sealed record of the manifest's run")


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `audit verify`."""
    del root

    @groups.audit.command("verify")
    def verify_cmd(
        log: Annotated[Path | None, typer.Argument(
            help="The app audit log (default: audit/app.jsonl under ST_MOUNTPOINT).")] = None,
        key_stdin: Annotated[bool, typer.Option(
            "--key-stdin", help="Read the HMAC key (hex) from standard input instead of "
                                "Vault.")] = False,
        expect_last: Annotated[int | None, typer.Option(
            "--expect-last", min=1,
            help="The log must reach at least this record number (catches a cut-off end).")
        ] = None,
        manifest: Annotated[Path | None, typer.Option(
            "--manifest",
            help="A run manifest: its audit_seq must be that run's `sealed` record.")] = None,
        anchored: Annotated[bool, typer.Option(
            "--anchored",
            help="The log must end exactly at the head anchored in Vault (catches truncation, "
                 "rollback to an older copy, deletion, and records past the anchor).")] = False,
    ) -> None:
        """Verify every record; exit 6 and name the first broken record when the chain fails."""
        from entrypoint.audit.applog import verify

        path = log if log is not None else _default_log()
        # Read the anchor first: a deleted log must fail against it, not as "no log".
        head = _vault_head() if anchored else None
        if not anchored and not path.is_file():
            raise AuditError("no audit log at the given location (is the workspace open?)")
        key = _read_key_stdin() if key_stdin else _vault_audit_key()
        try:
            result = verify(path, key)
        finally:
            key.wipe()
        if anchored:
            from entrypoint.audit.anchor import check_against

            check_against(result, head)  # type: ignore[arg-type]
        if not result.ok:
            raise AuditError(f"broken at record {result.first_bad_seq}: {result.reason}")
        expected: list[int] = [expect_last] if expect_last is not None else []
        sealed = _manifest_seq(manifest) if manifest is not None else None
        if sealed is not None:
            expected.append(sealed[0])
        if expected and result.records < max(expected):
            raise AuditError(f"the log ends at record {result.records} but record "
                             f"{max(expected)} is expected (records cut off the end)")
        if sealed is not None:
            _check_sealed(path, *sealed)
        typer.echo(f"ok: {result.records} records")
        waiting = _journal_pending()
        if waiting:
            typer.echo(f"note: {waiting} pre-mount event(s) wait in the state dir's journal; "
                       "the next run merges them into this log")
