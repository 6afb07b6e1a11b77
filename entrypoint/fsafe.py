"""File operations for root inside a tree an untrusted process can write: directory fds,
O_NOFOLLOW, one device.

The trainer (hostile by assumption) can replace any name it may write by a symlink, at any
moment. Every helper here resolves names one component at a time relative to a directory fd
it holds, opens with O_NOFOLLOW, acts on the opened fd (fstat/fchown/fchmod), and refuses to
cross onto another device, so a swapped name makes the operation fail, never redirects it.

API (small on purpose):
- `open_dir(path, dir_fd=None)`   a directory fd; `path` is one name below `dir_fd`, or a path
                                  the caller trusts when `dir_fd` is None.
- `open_beneath(dir_fd, rel)`     walk a relative path component by component (no `..`).
- `open_regular(dir_fd, name)`    a read fd on a regular file (symlink, fifo, device: refused).
- `sha256_at(dir_fd, name)`       hash a regular file through `open_regular`.
- `create_at(dir_fd, name, data)` write a new file (O_EXCL: never overwrites, never follows).
- `walk(dir_fd)`                  every entry below, depth first, as (parent fd, name, lstat).
- `set_owner_mode(parent_fd, name, st, ...)` fchown/fchmod one entry found by `walk`.
Must never follow a symlink, never act on a name after checking it by path (no TOCTOU), never
open a device node or fifo, and never put a path into an error message.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from entrypoint.errors import WorkspaceError

__all__ = ["Entry", "create_at", "open_beneath", "open_dir", "open_regular", "set_owner_mode",
           "sha256_at", "walk"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a fifo planted under a regular file's name must not hang root on open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise WorkspaceError("refused a path component that is not a plain name")
    return name


def open_dir(path: str | Path, *, dir_fd: int | None = None) -> int:
    """Open a directory without following a symlink at its last component.

    With `dir_fd`, `path` must be one plain name below it and must be on the same device.
    Raises WorkspaceError (no path in the message) when it is missing, not a directory, a
    symlink or on another device. The caller closes the fd.
    """
    try:
        if dir_fd is None:
            return os.open(path, _DIR_FLAGS)
        fd = os.open(_name(str(path)), _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        raise WorkspaceError("a directory of the run is missing or was replaced by a link") from None
    if os.fstat(fd).st_dev != os.fstat(dir_fd).st_dev:
        os.close(fd)
        raise WorkspaceError("a directory of the run lies on another filesystem")
    return fd


def open_beneath(dir_fd: int, rel: str | Path) -> int:
    """Open the directory `rel` (relative, no `..`) below `dir_fd`, one component at a time.

    Raises WorkspaceError when a component is a symlink, not a directory or on another device.
    """
    parts = Path(rel).parts
    if Path(rel).is_absolute():
        raise WorkspaceError("refused an absolute path below a directory fd")
    fd = os.dup(dir_fd)
    try:
        for part in parts:
            nxt = open_dir(part, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(dir_fd: int, name: str) -> int:
    """A read-only fd on the regular file `name` in `dir_fd` (same device).

    Raises WorkspaceError when it is missing, a symlink, a fifo, a device or a directory.
    """
    try:
        fd = os.open(_name(name), _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        raise WorkspaceError("a file of the run is missing or is not a regular file") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_dev != os.fstat(dir_fd).st_dev:
        os.close(fd)
        raise WorkspaceError("a file of the run is missing or is not a regular file")
    return fd


def sha256_at(dir_fd: int, name: str) -> str:
    """The sha256 hex digest of the regular file `name` in `dir_fd`. Raises WorkspaceError."""
    fd = open_regular(dir_fd, name)
    h = hashlib.sha256()
    try:
        while block := os.read(fd, 1 << 20):
            h.update(block)
    finally:
        os.close(fd)
    return h.hexdigest()


def create_at(dir_fd: int, name: str, data: bytes, *, mode: int = 0o600) -> None:
    """Create `name` in `dir_fd` holding `data`; an existing name (file or symlink) is an error.

    O_CREAT|O_EXCL never follows a symlink, so a planted link cannot redirect the write.
    Raises WorkspaceError.
    """
    try:
        fd = os.open(_name(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError:
        raise WorkspaceError("a file of the run already exists or cannot be created") from None
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what the caller asked for
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Entry:
    """One entry found by `walk`: its parent's fd (valid during the iteration), name, lstat."""

    parent_fd: int
    name: str
    st: os.stat_result


def walk(dir_fd: int) -> Iterator[Entry]:
    """Every entry below `dir_fd`, children before their directory, never following a symlink
    and never descending onto another device. Yields lstat results; the parent fd is only
    valid until the next item. Raises WorkspaceError when a directory vanishes or is swapped.
    """
    dev = os.fstat(dir_fd).st_dev
    yield from _walk(dir_fd, dev)


def _walk(dir_fd: int, dev: int) -> Iterator[Entry]:
    try:
        names = sorted(os.listdir(dir_fd))
    except OSError:
        raise WorkspaceError("a directory of the run could not be listed") from None
    for name in names:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile: nothing left to act on
        if stat.S_ISDIR(st.st_mode) and st.st_dev == dev:
            child = open_dir(name, dir_fd=dir_fd)
            try:
                # fstat of what we opened must be what we listed (not swapped in between)
                now = os.fstat(child)
                if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
                    raise WorkspaceError("a directory of the run was swapped during a walk")
                yield from _walk(child, dev)
            finally:
                os.close(child)
        yield Entry(dir_fd, name, st)


def set_owner_mode(parent_fd: int, name: str, st: os.stat_result, *, uid: int = -1,
                   gid: int = -1, mode: int | None = None) -> None:
    """Change owner/group/mode of the regular file or directory `name` through an fd opened
    with O_NOFOLLOW, after checking it is still the inode `st` describes.

    Symlinks get only their own owner changed (lchown) and never a mode; fifos, sockets and
    devices are left alone (opening them could block or act on hardware). Raises
    WorkspaceError when the entry was swapped.
    """
    if stat.S_ISLNK(st.st_mode):
        try:
            os.chown(_name(name), uid, gid, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return
    try:
        fd = os.open(_name(name), _FILE_FLAGS, dir_fd=parent_fd)
    except OSError:
        raise WorkspaceError("a file of the run was replaced while its access was changed") from None
    try:
        now = os.fstat(fd)
        if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
            raise WorkspaceError("a file of the run was replaced while its access was changed")
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        if mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
