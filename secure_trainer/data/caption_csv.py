"""Captions from one CSV file (lora-scripts' `metadata_path`, Hugging Face `metadata.csv`).

Rows are `file name, caption`; an optional header names the columns (`file_name`/`filename`/
`image`/`file` and `caption`/`text`/`prompt`). Images are matched by file name, relative to the
image folder. SECURITY: captions are private data; errors name neither a file nor a caption.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from secure_trainer.errors import DataRejected

_NAME_COLUMNS = ("file_name", "filename", "image", "file", "image_path")
_CAPTION_COLUMNS = ("caption", "text", "prompt")
MAX_BYTES = 64 << 20  # a caption table, not a dataset


def read_caption_csv(path: Path) -> dict[str, str]:
    """{relative file name: caption} from a UTF-8 CSV. Raises DataRejected for an unreadable,
    non-UTF-8, malformed or oversized file, or a file name listed twice."""
    try:
        raw = path.read_bytes()
    except OSError:
        raise DataRejected("the caption CSV (metadata_path) could not be read") from None
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
    for number, row in enumerate(rows, start=1):
        if len(row) <= max(name_col, caption_col):
            raise DataRejected(f"caption CSV row {number} has too few columns")
        name = row[name_col].strip().replace("\\", "/").lstrip("./")
        if name in out:
            raise DataRejected(f"caption CSV row {number} repeats a file name")
        out[name] = row[caption_col].strip()
    return out


def csv_caption(captions: dict[str, str], image: Path, folder: Path) -> str | None:
    """The caption of `image` (inside `folder`) from `read_caption_csv` output, or None."""
    try:
        relative = image.relative_to(folder).as_posix()
    except ValueError:
        relative = image.name
    return captions.get(relative, captions.get(image.name))
