"""The names a run must never print: every dataset folder name of its subsets (with and without
Kohya's `<repeats>_` prefix), every file stem in those folders, and the caption lines there.

The lifecycle registers them with the redactor that filters the trainer's output, so a trainer
(or a library under it) that prints a file name or a subject's folder name prints `<name>`.
`dataset_names` reads directory listings only; `caption_lines` reads the caption text files
(bounded, never following a link). Neither logs nor returns anything but to the redactor.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CAPTION_SUFFIXES", "caption_lines", "dataset_names"]

CAPTION_SUFFIXES = (".txt", ".caption")
_CAPTION_MAX = 64 * 1024  # a caption file larger than this is not a caption; read its head
_LINE_MIN = 8  # shorter caption lines ("a photo") are scrubbed only as part of longer ones

_REPEATS = re.compile(r"^\d+_(.+)$")
_TOP = "datasets"  # coupling: Workspace.datasets_dir


def _with_unprefixed(name: str) -> set[str]:
    match = _REPEATS.match(name)
    return {name, match.group(1)} if match else {name}


def dataset_names(image_dirs: Iterable[Path], root: Path) -> set[str]:
    """Folder names from `datasets/` down to each image dir, and the stems (and full names) of
    the files in each image dir. `image_dirs` may be relative to the workspace `root`."""
    names: set[str] = set()
    for image_dir in image_dirs:
        folder = image_dir if image_dir.is_absolute() else root / image_dir
        try:
            parts = folder.relative_to(root).parts
        except ValueError:
            parts = folder.parts[-2:]  # outside the workspace: still its own names
        for part in parts:
            if part != _TOP:
                names |= _with_unprefixed(part)
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    names |= {entry.name, Path(entry.name).stem}
        except OSError:
            continue  # missing folder: the policy (dataset.present) has judged it already
    return {n for n in names if n not in ("", ".", "..")}


def caption_lines(image_dirs: Iterable[Path], root: Path) -> set[str]:
    """Every non-empty caption line (stripped, at least 8 characters) of the caption files in
    the image dirs; links and unreadable files are skipped."""
    lines: set[str] = set()
    for image_dir in image_dirs:
        folder = image_dir if image_dir.is_absolute() else root / image_dir
        try:
            entries = [e for e in os.scandir(folder)
                       if e.name.endswith(CAPTION_SUFFIXES) and e.is_file(follow_symlinks=False)]
        except OSError:
            continue
        for entry in entries:
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                text = os.read(fd, _CAPTION_MAX).decode("utf-8", "replace")
            finally:
                os.close(fd)
            lines |= {ln.strip() for ln in text.splitlines() if len(ln.strip()) >= _LINE_MIN}
    return lines
