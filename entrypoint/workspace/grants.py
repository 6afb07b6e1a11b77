"""Read access for the training group to the run's inputs inside the workspace, and its
revocation.

Imports and model copies are made by root and may be owner-only (0600/0700: the sanitizer's
default). The unprivileged trainer needs to read exactly the base model and the dataset folders
of its run — nothing else in the workspace — so the supervisor hands those to the training
group, read-only, just before it starts the child, and takes the access back in teardown (and
at the next start after a SIGKILL), so grants never accumulate across runs.
SECURITY: only entries strictly below `models/` or `datasets/` are ever granted (never the
mount root, `audit/`, `runs/`, `tmp/`, `registry.sqlite` or `.secure-trainer/`); the mount
root's mode is never changed; every change goes through directory fds and O_NOFOLLOW
(`entrypoint/fsafe.py`); 'other' bits are never added (other host users must not read
plaintext through the allow_other mount).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from entrypoint.errors import ConfigError, WorkspaceError
from entrypoint.fsafe import open_beneath, open_dir, set_owner_mode, walk

__all__ = ["GRANTABLE", "grant_group_read", "revoke_group_read"]

GRANTABLE = ("models", "datasets")
"""Top-level workspace folders whose contents may be granted (coupling: workspace LAYOUT)."""
_GROUP = 0o070


def _relative(path: Path, root: Path) -> tuple[str, ...] | None:
    """`path` relative to `root` after resolving links; None when it lies outside `root`."""
    try:
        rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
    except ValueError:
        return None
    return rel.parts


def _grantable(parts: tuple[str, ...]) -> tuple[str, ...]:
    if len(parts) < 2 or parts[0] not in GRANTABLE:
        raise ConfigError("the model and dataset folders of a run must lie below models/ or "
                          "datasets/ of the workspace")
    return parts


def _grant_fd(fd: int, gid: int, extra: int) -> None:
    st = os.fstat(fd)
    if st.st_gid != gid:
        os.fchown(fd, -1, gid)
    if st.st_mode & extra != extra:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) | extra)


def _traverse(root_fd: int, parts: tuple[str, ...], gid: int) -> None:
    """g+x (and the training group) on each directory between the root and the target."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            nxt = open_dir(part, dir_fd=fd)
            os.close(fd)
            fd = nxt
            st = os.fstat(fd)
            if st.st_gid != gid and st.st_mode & stat.S_IXOTH == 0:
                os.fchown(fd, -1, gid)
            if not st.st_mode & stat.S_IXGRP:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_IXGRP)
    finally:
        os.close(fd)


def _grant_tree(root_fd: int, parts: tuple[str, ...], gid: int) -> int:
    parent = open_beneath(root_fd, Path(*parts[:-1]))
    try:
        st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            return 0
        if not stat.S_ISDIR(st.st_mode):
            set_owner_mode(parent, parts[-1], st, gid=gid if st.st_gid != gid else -1,
                           mode=stat.S_IMODE(st.st_mode) | stat.S_IRGRP)
            return 1
        top = open_dir(parts[-1], dir_fd=parent)
    finally:
        os.close(parent)
    granted = 1
    try:
        _grant_fd(top, gid, stat.S_IRGRP | stat.S_IXGRP)
        for entry in walk(top):
            mode = entry.st.st_mode
            if stat.S_ISLNK(mode):
                continue
            extra = stat.S_IRGRP | (stat.S_IXGRP if stat.S_ISDIR(mode) else 0)
            if entry.st.st_gid != gid or mode & extra != extra:
                set_owner_mode(entry.parent_fd, entry.name, entry.st,
                               gid=gid if entry.st.st_gid != gid else -1,
                               mode=stat.S_IMODE(mode) | extra)
            granted += 1
    finally:
        os.close(top)
    return granted


def grant_group_read(paths: Iterable[Path], *, root: Path, gid: int,
                     listable: Iterable[Path] = ()) -> int:
    """Give group `gid` read (and directory traverse) access to each path and everything below.

    The directories between `root` and each path get traverse (g+x) only, never a listing;
    the directories in `listable` (a Kohya `train_data_dir`, whose `<N>_<name>` folders the
    trainer enumerates) also get a listing (g+r), without opening what else lies in them.
    Paths outside `root` are skipped (the trainer reads those with its own rights; the policy
    rule training.paths_in_workspace judges them). Returns the number of entries granted.
    Raises ConfigError when a path (or listable dir) inside `root` is not strictly below
    models/ or datasets/, WorkspaceError (no path in the message) when the workspace refuses
    a change or a directory was replaced by a link.
    """
    targets = [p for p in (_relative(t, root) for t in paths if os.path.lexists(t))
               if p is not None]
    lists = [p for p in (_relative(d, root) for d in listable if os.path.isdir(d))
             if p is not None]
    for parts in (*targets, *lists):
        _grantable(parts)
    granted = 0
    root_fd = open_dir(root)
    try:
        for parts in lists:
            _traverse(root_fd, parts[:-1], gid)
            fd = open_beneath(root_fd, Path(*parts))
            try:
                _grant_fd(fd, gid, stat.S_IRGRP | stat.S_IXGRP)
            finally:
                os.close(fd)
            granted += 1
        for parts in targets:
            _traverse(root_fd, parts[:-1], gid)
            granted += _grant_tree(root_fd, parts, gid)
    except OSError:
        raise WorkspaceError("could not give the training user read access to the run's "
                             "model and dataset") from None
    finally:
        os.close(root_fd)
    return granted


def revoke_group_read(root: Path, gid: int) -> int:
    """Take back every grant to group `gid` below models/ and datasets/ (any run's, also a
    SIGKILLed one's): group set to root's, group bits cleared. Returns entries changed.

    Stateless on purpose: the training group is dedicated to the trainer, so any entry it
    owns there is a grant. The mount root and the other top-level folders are not touched.
    Raises WorkspaceError when an entry cannot be changed or was swapped during the walk.
    """
    changed = 0
    root_fd = open_dir(root)
    try:
        for name in GRANTABLE:
            try:
                top = open_dir(name, dir_fd=root_fd)
            except WorkspaceError:
                continue  # not created yet
            try:
                for entry in walk(top):
                    if entry.st.st_gid == gid:
                        mode = None if stat.S_ISLNK(entry.st.st_mode) else \
                            stat.S_IMODE(entry.st.st_mode) & ~_GROUP
                        set_owner_mode(entry.parent_fd, entry.name, entry.st, gid=0, mode=mode)
                        changed += 1
                st = os.fstat(top)
                if st.st_gid == gid:
                    os.fchown(top, -1, 0)
                    os.fchmod(top, stat.S_IMODE(st.st_mode) & ~_GROUP)
                    changed += 1
            finally:
                os.close(top)
    except OSError:
        raise WorkspaceError("could not take back the training user's read access") from None
    finally:
        os.close(root_fd)
    return changed
