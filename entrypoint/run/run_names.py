"""The names a run must never print: every dataset folder name of its subsets (with and without
Kohya's `<repeats>_` prefix) and every file stem in those folders.

The lifecycle registers them with the redactor that filters the trainer's output, so a trainer
(or a library under it) that prints a file name or a subject's folder name prints `<name>`.
Reads directory listings only (no file content); must never follow a symlinked folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["dataset_names"]

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
