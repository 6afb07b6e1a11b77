"""Least access for one run inside the mounted workspace: the supervisor's umask, the
registry's mode, the run's own directories.

`SUPERVISOR_UMASK` is set by `run` before anything is created (files 0600, dirs 0700 unless a
mode is asked for); `restrict_registry` keeps `registry.sqlite` (subject ids, original file
names) owner-only even when an older version created it 0644; `make_private_dir` creates a
run directory 0700 with the owner the caller names.
Must never follow a symlink (everything goes through `entrypoint/fsafe.py`) and never widen a
mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from entrypoint.errors import WorkspaceError
from entrypoint.fsafe import open_dir, set_owner_mode

__all__ = ["REGISTRY_NAME", "SUPERVISOR_UMASK", "make_private_dir", "restrict_registry"]

SUPERVISOR_UMASK = 0o077
REGISTRY_NAME = "registry.sqlite"  # coupling: Workspace.registry_path
_SQLITE_SIDECARS = ("-journal", "-wal", "-shm")


def restrict_registry(root: Path) -> int:
    """chmod 0600 the registry and its SQLite side files at the workspace root; returns how
    many were narrowed. A symlink there is refused (WorkspaceError), never followed."""
    changed = 0
    root_fd = open_dir(root)
    try:
        for name in (REGISTRY_NAME, *(REGISTRY_NAME + s for s in _SQLITE_SIDECARS)):
            try:
                st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                raise WorkspaceError("the registry is not a regular file")
            if stat.S_IMODE(st.st_mode) & 0o077:
                set_owner_mode(root_fd, name, st, mode=stat.S_IMODE(st.st_mode) & 0o600)
                changed += 1
    finally:
        os.close(root_fd)
    return changed


def make_private_dir(parent: Path, name: str, owner: tuple[int, int] | None) -> Path:
    """Create `parent/name` with mode 0700, owned by `owner` (root's when None).

    `parent` must be a directory only root can write (the caller's guarantee); the new
    directory is opened with O_NOFOLLOW before its owner is changed. Raises WorkspaceError.
    """
    parent_fd = open_dir(parent)
    try:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            raise WorkspaceError("a directory of this run already exists") from None
        fd = open_dir(name, dir_fd=parent_fd)
        try:
            os.fchmod(fd, 0o700)
            if owner is not None:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
    finally:
        os.close(parent_fd)
    return parent / name
