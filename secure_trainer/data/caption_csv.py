"""Captions from one CSV file (lora-scripts' `metadata_path`, Hugging Face `metadata.csv`).

Rows are `file name, caption`; an optional header names the columns (`file_name`/`filename`/
`image`/`file` and `caption`/`text`/`prompt`). Images are matched by file name, relative to the
image folder; a row naming a file outside it (absolute, drive letter, `..`) or a file named
twice rejects the whole table. Used by `train --config` (lora-scripts YAML) and by
`data import --caption-csv` (privacy/sanitize.py scans and writes the captions).
SECURITY: captions are private data; errors name neither a file nor a caption (row numbers
and counts only); the table is read without following a symlink.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path, PurePosixPath

from secure_trainer.errors import DataRejected

_NAME_COLUMNS = ("file_name", "filename", "image", "file", "image_path")
_CAPTION_COLUMNS = ("caption", "text", "prompt")
MAX_BYTES = 64 << 20  # a caption table, not a dataset


def read_caption_csv(path: Path) -> dict[str, str]:
    """{relative file name: caption} from a UTF-8 CSV. Raises DataRejected for an unreadable
    (or symlinked), non-UTF-8, malformed or oversized file, a row naming a file outside the
    image folder, or file names listed twice (with their count)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError:
        raise DataRejected("the caption CSV (metadata_path) could not be read") from None
    return parse_caption_csv(raw)


def parse_caption_csv(raw: bytes) -> dict[str, str]:
    """`read_caption_csv` on the file's bytes (same rules and errors)."""
    if len(raw) > MAX_BYTES:
        raise DataRejected("the caption CSV (metadata_path) is larger than 64 MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataRejected("the caption CSV (metadata_path) is not valid UTF-8") from None
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    except csv.Error:
        raise DataRejected("the caption CSV (metadata_path) is not valid CSV") from None
    name_col, caption_col = 0, 1
    if rows and rows[0][0].strip().lower() in _NAME_COLUMNS:
        header = [c.strip().lower() for c in rows.pop(0)]
        name_col = next(i for i, c in enumerate(header) if c in _NAME_COLUMNS)
        found = [i for i, c in enumerate(header) if c in _CAPTION_COLUMNS]
        if not found:
            raise DataRejected("the caption CSV header has no caption/text column")
        caption_col = found[0]
    out: dict[str, str] = {}
    repeated = 0
    for number, row in enumerate(rows, start=1):
        if len(row) <= max(name_col, caption_col):
            raise DataRejected(f"caption CSV row {number} has too few columns")
        name = _relative_name(row[name_col], number)
        if name in out:
            repeated += 1
            continue
        out[name] = row[caption_col].strip()
    if repeated:
        raise DataRejected(f"the caption CSV lists {repeated} file name(s) more than once")
    return out


def _relative_name(cell: str, number: int) -> str:
    """The row's file name as a clean relative POSIX path. Raises DataRejected (row number
    only) for an absolute path, a drive letter, `..` or an empty name: a caption table may
    only name files inside its image folder."""
    name = cell.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    parts = PurePosixPath(name).parts
    if (not parts or name.startswith("/") or ":" in parts[0] or ".." in parts
            or any(p in ("", ".") for p in parts)):
        raise DataRejected(f"caption CSV row {number} names a file outside the image folder")
    return PurePosixPath(*parts).as_posix()


def import_captions(path: Path) -> dict[PurePosixPath, str]:
    """The CSV's captions keyed by relative path, for `data import --caption-csv`
    (`read_caption_csv`'s rules and errors)."""
    return {PurePosixPath(name): caption for name, caption in read_caption_csv(path).items()}


def csv_caption(captions: dict[str, str], image: Path, folder: Path) -> str | None:
    """The caption of `image` (inside `folder`) from `read_caption_csv` output, or None."""
    try:
        relative = image.relative_to(folder).as_posix()
    except ValueError:
        relative = image.name
    return captions.get(relative, captions.get(image.name))
