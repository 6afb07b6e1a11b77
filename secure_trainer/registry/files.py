"""Content hashes and the `subjects.csv` reader used by import, lineage and erasure.

Must never put a file name, path or subject id in an error message.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path, PurePosixPath

from secure_trainer.errors import DataRejected


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (the content hash the registry and lineage use)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_subjects(csv_path: Path) -> dict[PurePosixPath, str]:
    """`subjects.csv` (header `path,subject`; path relative to the import source) as a map.

    Raises DataRejected (naming only the row number) for a malformed file.
    """
    try:
        text = csv_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise DataRejected("subjects.csv could not be read as UTF-8") from None
    rows = csv.DictReader(io.StringIO(text))
    if rows.fieldnames is None or {"path", "subject"} - {f.strip() for f in rows.fieldnames}:
        raise DataRejected("subjects.csv needs a header row with columns path,subject")
    out: dict[PurePosixPath, str] = {}
    for n, row in enumerate(rows, start=2):
        rel, subject = (row.get("path") or "").strip(), (row.get("subject") or "").strip()
        if not rel or not subject or len(subject) > 128 or rel.startswith("/") or ".." in rel:
            raise DataRejected(f"subjects.csv row {n}: need a relative path and a subject id "
                               "of at most 128 characters")
        out[PurePosixPath(rel)] = subject
    return out



def tree_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder as the sorted list of (relative name, content hash).

    Symlinks are hashed as their target text, never followed (a base model folder is hashed as
    it lies). Raises OSError when something cannot be read.
    """
    if not path.is_dir() or path.is_symlink():
        return file_sha256(path)
    digest = hashlib.sha256(b"secure-trainer tree v1\n")
    entries: list[tuple[str, str]] = []
    for top, dirs, names in os.walk(path, followlinks=False):
        dirs.sort()
        for name in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            full = Path(top) / name
            rel = full.relative_to(path).as_posix()
            value = "link:" + os.readlink(full) if full.is_symlink() else file_sha256(full)
            entries.append((rel, value))
    for rel, value in sorted(entries):
        digest.update(f"{rel}\x00{value}\n".encode())
    return digest.hexdigest()


def text_record_sha256(record: object) -> str:
    """SHA-256 of one text record's canonical JSON (sorted keys, no spaces): the content hash a
    text dataset's record has in the registry and in an LLM run's lineage."""
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def jsonl_record_hashes(path: Path) -> list[str]:
    """`text_record_sha256` of every record (non-blank line) of a JSONL file, in file order.

    Raises OSError when it cannot be read, DataRejected (line number only) for a bad line.
    """
    out: list[str] = []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                out.append(text_record_sha256(json.loads(line)))
            except ValueError:
                raise DataRejected(f"line {number} of a text dataset is not JSON") from None
    return out
