"""Read access for the training group to the run's inputs inside the workspace (never write).

Imports and model copies are made by root and may be owner-only (0600/0700: the sanitizer's
default). The unprivileged trainer needs to read exactly the base model and the dataset folders
of its run — nothing else in the workspace — so the supervisor hands those to the training
group, read-only, just before it starts the child.
SECURITY: only paths that resolve inside the mounted workspace are touched, symlinks are not
followed, and 'other' bits are never added (other host users must not read plaintext through
the allow_other mount).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from entrypoint.errors import WorkspaceError

__all__ = ["grant_group_read"]


def _inside(path: Path, root: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
    except OSError:
        return False


def _grant(path: Path, gid: int) -> int:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return 0
    extra = stat.S_IRGRP | (stat.S_IXGRP if stat.S_ISDIR(st.st_mode) else 0)
    if st.st_gid != gid:
        os.lchown(path, -1, gid)
    if st.st_mode & extra != extra:
        os.chmod(path, stat.S_IMODE(st.st_mode) | extra)
    return 1


def grant_group_read(paths: Iterable[Path], *, root: Path, gid: int,
                     listable: Iterable[Path] = ()) -> int:
    """Give group `gid` read (and directory traverse) access to each path and everything below.

    The parents between `root` and each path get traverse (g+x) only, never a listing; the
    directories in `listable` (a Kohya `train_data_dir`, whose `<N>_<name>` folders the trainer
    enumerates) also get a listing (g+r), without opening what else lies in them.
    Paths outside `root` are skipped (the trainer reads those with its own rights). Returns the
    number of entries granted. Raises WorkspaceError (no path in the message) when the
    workspace refuses a chown/chmod.
    """
    granted = 0
    try:
        for d in listable:
            if d.is_dir() and not d.is_symlink() and _inside(d, root):
                granted += _grant(d, gid)
        for top in paths:
            if not top.exists() or not _inside(top, root):
                continue
            for parent in reversed(top.resolve().relative_to(Path(root).resolve()).parents):
                d = Path(root) / parent
                st = os.lstat(d)
                if st.st_gid != gid and st.st_mode & stat.S_IXOTH == 0:
                    os.lchown(d, -1, gid)
                os.chmod(d, stat.S_IMODE(os.lstat(d).st_mode) | stat.S_IXGRP)
            granted += _grant(top, gid)
            if top.is_dir() and not top.is_symlink():
                for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
                    for name in (*dirnames, *filenames):
                        granted += _grant(Path(dirpath) / name, gid)
    except OSError:
        raise WorkspaceError("could not give the training user read access to the run's "
                             "model and dataset") from None
    return granted
