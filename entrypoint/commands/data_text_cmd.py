"""`secure-trainer data import-text SRC.jsonl`: a text corpus enters the workspace sanitized.

Alpaca or chat JSONL is parsed, PII-scanned (redact, reject or report), deduplicated and
written to `datasets/<name>/train.jsonl` (with the counts in `import-report.json`) in the
registry (each record's content hash and pseudonymous subject, so `registry find/erase
--subject` covers text; an expiry with `--retention-days` or ST_RETENTION_DAYS), in the
mounted workspace (`--workspace` or
ST_MOUNTPOINT; a plaintext destination only with `--unsafe-plaintext-dest`). Output is counts
by reason only. Must never print a record, a subject id, a file name or a path.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from entrypoint.commands.data_cmd import (
    DATASETS_DIR,
    REGISTRY_FILE,
    _print_report,
    resolve_workspace,
)
from entrypoint.errors import ConfigError, DataRejected

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups

TRAIN_FILE = "train.jsonl"
# coupling: the counts `run`'s policy facts can read for a text dataset (no values in it).
REPORT_FILE = "import-report.json"
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _deny_terms(deny: list[str], deny_list: Path | None) -> list[str]:
    terms = list(deny)
    if deny_list is not None:
        try:
            terms += [t.strip() for t in deny_list.read_text(encoding="utf-8").splitlines()
                      if t.strip() and not t.lstrip().startswith("#")]
        except (OSError, UnicodeDecodeError):
            raise ConfigError("--deny-list file could not be read as UTF-8") from None
    return terms


def import_text(
    src: Annotated[Path, typer.Argument(help="JSONL file in the alpaca or chat format "
                                             "(read only).")],
    name: Annotated[str | None, typer.Option("--name", help="Dataset name in the "
                                                            "workspace.")] = None,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", help="The mounted workspace (default: ST_MOUNTPOINT).")] = None,
    pii: Annotated[str, typer.Option("--pii", help="PII in text: report, redact or "
                                                   "reject.")] = "redact",
    deny: Annotated[list[str] | None, typer.Option("--deny", help="A deny-listed term "
                                                                  "(repeatable).")] = None,
    deny_list: Annotated[Path | None, typer.Option(
        "--deny-list", help="File of deny-listed terms, one a line.")] = None,
    subject_field: Annotated[str, typer.Option(
        "--subject-field", help="The record field holding the subject's pseudonym.")] = "subject",
    unsafe_plaintext_dest: Annotated[bool, typer.Option(
        "--unsafe-plaintext-dest", help="Allow an unencrypted workspace (tests/dev only).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
    fail_on_reject: Annotated[bool, typer.Option(
        "--fail-on-reject", help="Exit 8 if any record was rejected.")] = False,
    retention_days: Annotated[int | None, typer.Option(
        "--retention-days", help="Days until `registry expire` deletes the dataset "
                                 "(default: ST_RETENTION_DAYS; none: no expiry).")] = None,
) -> None:
    """Sanitize SRC into the workspace's datasets/NAME/train.jsonl; print counts by reason."""
    from secure_trainer.llm.text_import import sanitize_lines, to_jsonl
    from secure_trainer.privacy.pii import PiiMode
    from secure_trainer.privacy.sanitize import atomic_write

    try:
        mode = PiiMode(pii)
    except ValueError:
        raise ConfigError("--pii must be report, redact or reject") from None
    ws = resolve_workspace(workspace, unsafe_plaintext=unsafe_plaintext_dest)
    src_abs = src.resolve()
    if src_abs.is_relative_to(ws):
        raise ConfigError("the import source must be outside the workspace")
    try:
        raw = src_abs.read_bytes()
        lines = raw.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise DataRejected("cannot read the source (a UTF-8 JSONL file is expected)") from None
    if name is None:
        # A pseudonymous default: the source file's own name may be personal data.
        name = "text-" + hashlib.sha256(raw).hexdigest()[:10]
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS or name[0] in "._-":
        raise ConfigError("--name may hold letters, digits, '.', '_' and '-' (max 64)")
    from entrypoint.run.seal import retention_days_option

    days = retention_days_option(retention_days, os.environ)
    records, report = sanitize_lines(lines, mode=mode, deny_list=_deny_terms(deny or [], deny_list),
                                     subject_field=subject_field)
    summary = {"dataset": name, "pii_mode": mode.value, **report.summary()}
    if records:
        try:
            folder = ws / DATASETS_DIR / name
            atomic_write(folder / TRAIN_FILE, to_jsonl(records))
            atomic_write(folder / REPORT_FILE,
                         (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
        except OSError:
            raise DataRejected("could not write the dataset into the workspace") from None
        register_text_dataset(ws / REGISTRY_FILE, name, folder / TRAIN_FILE, records, days)
    _print_report(summary, as_json)
    rejected = sum(report.rejected.values())
    if not records:
        raise DataRejected(f"no record could be imported ({rejected} rejected; see counts above)")
    if fail_on_reject and rejected:
        raise DataRejected(f"{rejected} record(s) rejected and --fail-on-reject is set")


def register_text_dataset(registry_path: Path, name: str, jsonl: Path,
                          records: list[dict[str, object]], retention_days: int | None) -> int:
    """Record every record's content hash and subject (and the expiry) in the registry."""
    from datetime import timedelta

    from secure_trainer.registry import Registry, text_record_sha256

    registry = Registry(registry_path)
    count = registry.record_text(name, jsonl, [
        (text_record_sha256(r), r["subject"] if isinstance(r.get("subject"), str) else None)
        for r in records])
    if retention_days is not None:
        registry.set_dataset_expiry(name, jsonl.parent, timedelta(days=retention_days))
    return count


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `data import-text` to the data group."""
    del root
    groups.data.command("import-text")(import_text)
