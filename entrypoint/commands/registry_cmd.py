"""`secure-trainer registry list|show|find|erase|expire`: lineage queries and erasure.

The registry lives in the mounted workspace (`--workspace` or ST_MOUNTPOINT). Output names ids,
kinds and hashes; workspace-relative paths only with `--show-paths`. `erase`/`expire` delete
and then write a tombstone (hashes, counts) to the app audit log; the audit key is fetched
(from Vault, or `--audit-key-stdin`) BEFORE anything is deleted, so a deletion is never
left unrecorded for want of a key. Must never print a source file name or caption.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from entrypoint.commands.data_cmd import REGISTRY_FILE, resolve_workspace
from entrypoint.errors import AuditError, ConfigError
from entrypoint.secret import Secret
from secure_trainer.registry import ErasurePlan, ErasureReport, Registry

if TYPE_CHECKING:
    from entrypoint.audit.anchor import Head, HeadStore
    from entrypoint.audit.applog import AppAuditLog
    from entrypoint.commands.groups import CommandGroups

# coupling: E's workspace layout (audit/ dir) and applog file name.
AUDIT_LOG_RELPATH = Path("audit") / "app.jsonl"
_WS = typer.Option(None, "--workspace", help="The mounted workspace (default: ST_MOUNTPOINT).")
_UNSAFE = typer.Option(False, "--unsafe-plaintext-dest",
                       help="Allow a workspace that is not a gocryptfs mount (tests/dev only).")
_PATHS = typer.Option(False, "--show-paths", help="Also print workspace-relative paths.")
_JSON = typer.Option(False, "--json", help="Print JSON.")
_SUBJECT = typer.Option(..., "--subject", help="Pseudonymous data-subject id.")
_YES = typer.Option(False, "--yes", help="Really delete (without it: show the plan only).")
_KEY = typer.Option(False, "--audit-key-stdin",
                    help="Read the app audit-log key from stdin instead of Vault.")
_ID = typer.Argument(..., help="LoRA id (from `registry list`).")
_REKEY = typer.Option(False, "--rekey",
                      help="After deleting, move the workspace to a new master key and destroy "
                           "the old key version (`keys rekey`): backups stop opening.")
_CIPHER = typer.Option(None, "--cipher-dir", envvar="ST_CIPHER_DIR",
                       help="The workspace's cipher dir (needed by --rekey).")


def _registry(workspace: Path | None, unsafe: bool) -> tuple[Path, Registry]:
    ws = resolve_workspace(workspace, unsafe_plaintext=unsafe)
    return ws, Registry(ws / REGISTRY_FILE)


@contextmanager
def _audit_session(from_stdin: bool) -> Iterator[tuple[Secret, HeadStore | None, Any]]:
    """The app audit-log key and, with Vault, the store of the log's anchored head.

    The key comes from stdin (no anchor store then) or Vault (VAULT_* env), whose token stays
    live until the head is anchored; the logged-in VaultClient comes third (None with stdin).
    Raises VaultError/ConfigError.
    """
    if from_stdin:
        key = Secret(sys.stdin.buffer.read(4096).rstrip(b"\r\n"))
        if not key:
            raise ConfigError("--audit-key-stdin was given but stdin held no key")
        yield key, None, None
        return
    from entrypoint.audit.anchor import vault_store
    from entrypoint.vault.client import VaultClient
    from entrypoint.vault.settings import VaultSettings

    with VaultClient.from_settings(VaultSettings.from_env(os.environ)) as vault:
        vault.login()
        yield vault.audit_key(create=True), vault_store(vault, os.environ), vault


def _plan_lines(plan: ErasurePlan, show_paths: bool) -> list[str]:
    head = f"loras: {len(plan.loras)}  images: {len(plan.image_hashes)}  items: {len(plan.items)}"
    kinds = Counter(item.kind.value for item in plan.items)
    lines = [head, "by kind: " + (", ".join(f"{k}={n}" for k, n in sorted(kinds.items()))
                                  or "none")]
    for item in plan.items:
        ident = item.ref or "-"
        digest = item.sha256[:16] if item.sha256 else "-"
        line = f"  {item.kind.value:<13} {ident:<18} {digest}"
        lines.append(f"{line}  {item.rel_path}" if show_paths else line)
    return lines


def _plan_json(plan: ErasurePlan, show_paths: bool) -> str:
    return json.dumps({
        "reason": plan.reason,
        "loras": [{"id": lo.id, "sha256": lo.sha256} for lo in plan.loras],
        "image_sha256": list(plan.image_hashes),
        "items": [{"kind": i.kind.value, "ref": i.ref, "sha256": i.sha256,
                   **({"path": i.rel_path} if show_paths else {})} for i in plan.items],
    }, indent=2)


def _execute(ws: Path, registry: Registry, plan: ErasurePlan, yes: bool, key_stdin: bool,
             show_paths: bool, rekey_cipher: Path | None = None) -> ErasureReport | None:
    for line in _plan_lines(plan, show_paths):
        typer.echo(line)
    if not plan.items and not plan.loras and not plan.image_hashes:
        typer.echo("nothing to delete")
        return None
    if not yes:
        typer.echo("nothing deleted: re-run with --yes to delete all of the above")
        return None
    from entrypoint.audit.anchor import AnchorMode, anchor_after_op
    from entrypoint.audit.applog import AppAuditLog, derive_tombstone_key

    mode = AnchorMode.from_env(os.environ)
    if rekey_cipher is not None and key_stdin:
        raise ConfigError("--rekey needs Vault (the workspace key): drop --audit-key-stdin")
    if mode == AnchorMode.REQUIRED and key_stdin:
        raise AuditError("ST_AUDIT_ANCHOR=required needs Vault: the erasure's audit head must "
                         "be anchored there (drop --audit-key-stdin)")
    # SECURITY: the key is fetched before deleting — never an unrecorded erasure.
    with _audit_session(key_stdin) as (key, store, vault):
        tombstone_key = derive_tombstone_key(key)
        try:
            log = AppAuditLog(ws / AUDIT_LOG_RELPATH, key)
            # The tombstone keeps HMAC(Vault-derived key, subject id): an id like "S-1042" cannot
            # be recovered from it by enumeration without Vault.
            report = registry.erase(plan, tombstone_key=tombstone_key.reveal())
            try:
                log.append("erasure", **report.audit_fields())
            except OSError:
                raise AuditError("the erasure was done but its tombstone could not be written to "
                                 "the audit log; check the workspace audit/ folder") from None
            head = anchor_after_op(ws / AUDIT_LOG_RELPATH, key, store, mode,
                                   lambda m: typer.echo(m, err=True))
            if rekey_cipher is not None:
                head = _rekey(ws, rekey_cipher, vault, log, key, store, mode)
        finally:
            tombstone_key.wipe()
            key.wipe()
    if plan.loras:
        typer.echo(f"deleted {len(plan.loras)} LoRA(s) whole: a LoRA trained on this data "
                   "cannot be partially untrained; retrain without it")
    counts = ", ".join(f"{k}={v}" for k, v in sorted(report.by_kind.items())) or "none"
    typer.echo(f"deleted: {counts}; files={report.files_deleted} dirs={report.dirs_deleted} "
               f"already_gone={report.already_gone}; tombstone written to the audit log")
    if head is not None:
        typer.echo(f"audit head anchored in Vault at record {head.seq}")
    return report


def _rekey(ws: Path, cipher_dir: Path, vault: Any, log: AppAuditLog, key: Secret,
           store: HeadStore | None, mode: str) -> Head | None:
    """Crypto-shred after the erasure: record the start, close, rekey, reopen, record the end.

    The start is anchored before the workspace closes, so a rekey that dies is still on record.
    """
    from entrypoint.audit.anchor import anchor_after_op
    from entrypoint.audit.applog import AppAuditLog
    from entrypoint.workspace.gocryptfs import Gocryptfs
    from entrypoint.workspace.keys import KeyManager, crash_at_from_env
    from entrypoint.workspace.rekey import rekey_open_workspace

    def warn(message: str) -> None:
        typer.echo(message, err=True)

    log.append("rekey_started")
    anchor_after_op(ws / AUDIT_LOG_RELPATH, key, store, mode, warn)
    fs = Gocryptfs()
    result = rekey_open_workspace(KeyManager(vault, fs, cipher_dir), fs, cipher_dir, ws,
                                  unsafe_test_crash_at=crash_at_from_env(os.environ))
    AppAuditLog(ws / AUDIT_LOG_RELPATH, key).append(
        "rekey", old_version=result.old_version, new_version=result.new_version,
        files=result.files)
    typer.echo(f"rekeyed: new master key; key version {result.old_version} destroyed, "
               f"{result.new_version} active (backups of the old cipher dir no longer open)")
    return anchor_after_op(ws / AUDIT_LOG_RELPATH, key, store, mode, warn)


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `registry list|show|find|erase|expire`."""
    del root

    @groups.registry.command("list")
    def list_cmd(workspace: Path | None = _WS, unsafe: bool = _UNSAFE,
                 as_json: bool = _JSON) -> None:
        """Every registered LoRA: id, hash, run, created, expires."""
        _, registry = _registry(workspace, unsafe)
        loras = registry.loras()
        if as_json:
            typer.echo(json.dumps([{"id": lo.id, "sha256": lo.sha256, "run_id": lo.run_id,
                                    "created": lo.created, "expires": lo.expires}
                                   for lo in loras], indent=2))
            return
        typer.echo(f"{'id':<17} {'sha256':<16} {'run':<20} {'created':<25} expires")
        for lo in loras:
            typer.echo(f"{lo.id:<17} {lo.sha256[:16]:<16} {lo.run_id[:20]:<20} "
                       f"{lo.created:<25} {lo.expires or '-'}")

    @groups.registry.command("show")
    def show_cmd(lora_id: str = _ID, workspace: Path | None = _WS, unsafe: bool = _UNSAFE,
                 show_paths: bool = _PATHS, as_json: bool = _JSON) -> None:
        """One LoRA: owner, purpose, legal basis, base model, lineage size, artefacts."""
        _, registry = _registry(workspace, unsafe)
        rec, hashes, arts = registry.lora(lora_id)
        info: dict[str, object] = {
            "id": rec.id, "sha256": rec.sha256, "run_id": rec.run_id,
            "base_model_sha256": rec.base_model_sha256, "dataset": rec.dataset,
            "owner": rec.owner, "purpose": rec.purpose, "legal_basis": rec.legal_basis,
            "created": rec.created, "expires": rec.expires, "images": len(hashes)}
        if show_paths:
            info["path"] = rec.path
        artefacts = [{"kind": k, **({"path": p} if show_paths else {})} for k, p in arts]
        if as_json:
            typer.echo(json.dumps({**info, "artefacts": artefacts}, indent=2))
            return
        for k, v in info.items():
            typer.echo(f"{k}: {v}")
        for art in artefacts:
            typer.echo(f"artefact: {art['kind']}" + (f"  {art['path']}" if show_paths else ""))

    @groups.registry.command("find")
    def find_cmd(subject: str = _SUBJECT, workspace: Path | None = _WS, unsafe: bool = _UNSAFE,
                 show_paths: bool = _PATHS, as_json: bool = _JSON) -> None:
        """Every LoRA, run artefact, dataset file and cache derived from a data subject."""
        _, registry = _registry(workspace, unsafe)
        plan = registry.plan_subject(subject)
        if as_json:
            typer.echo(_plan_json(plan, show_paths))
            return
        for line in _plan_lines(plan, show_paths):
            typer.echo(line)

    @groups.registry.command("erase")
    def erase_cmd(subject: str = _SUBJECT, yes: bool = _YES, audit_key_stdin: bool = _KEY,
                  workspace: Path | None = _WS, unsafe: bool = _UNSAFE,
                  show_paths: bool = _PATHS, rekey: bool = _REKEY,
                  cipher_dir: Path | None = _CIPHER) -> None:
        """Delete everything derived from a subject (whole LoRAs included); audit tombstone.
        With --rekey, then crypto-shred (new master key) so old backups stop opening."""
        ws, registry = _registry(workspace, unsafe)
        if rekey and cipher_dir is None:
            raise ConfigError("--rekey needs --cipher-dir or ST_CIPHER_DIR")
        _execute(ws, registry, registry.plan_subject(subject), yes, audit_key_stdin, show_paths,
                 rekey_cipher=cipher_dir if rekey else None)

    @groups.registry.command("expire")
    def expire_cmd(yes: bool = _YES, audit_key_stdin: bool = _KEY,
                   workspace: Path | None = _WS, unsafe: bool = _UNSAFE,
                   show_paths: bool = _PATHS,
                   now: str | None = typer.Option(None, "--now", hidden=True,
                                                  help="ISO time to expire against (tests).")) -> None:
        """Delete every LoRA past its expiry, with its run artefacts; audit tombstone."""
        ws, registry = _registry(workspace, unsafe)
        try:
            when = datetime.fromisoformat(now).astimezone(UTC) if now else None
        except ValueError:
            raise ConfigError("--now must be an ISO 8601 time") from None
        _execute(ws, registry, registry.plan_expired(when), yes, audit_key_stdin, show_paths)
