"""End-of-run wipe of temp files and caches: overwrite (where cheap) then unlink; counts only.

A directory target keeps the directory and loses its contents; a file target is removed.
SECURITY: never follows a symlink (links are unlinked, not their targets; below a target every
name is opened relative to a held directory fd with O_NOFOLLOW and checked against the listed
inode, so a directory swapped for a link mid-wipe is not entered), never crosses into
another filesystem (a workspace mounted below /tmp stays untouched), refuses system roots, and
never prints or returns a file name.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from entrypoint.errors import ConfigError

__all__ = [
    "CACHE_ENV_VARS",
    "OVERWRITE_LIMIT",
    "WipeReport",
    "default_targets",
    "in_container",
    "wipe",
]

# Caches the ML stack writes; the lifecycle points them into run-private dirs.
CACHE_ENV_VARS = ("TMPDIR", "HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE",
                  "TORCH_HOME", "XDG_CACHE_HOME", "TRITON_CACHE_DIR", "PIP_CACHE_DIR",
                  "CUDA_CACHE_PATH", "TORCHINDUCTOR_CACHE_DIR", "MPLCONFIGDIR")
# Overwriting is cheap for small files and pointless for multi-GB caches on a tmpfs; above this
# size a file is only unlinked.
OVERWRITE_LIMIT = 16 * 1024 * 1024
_CHUNK = 1024 * 1024
_REFUSED = frozenset({"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt",
                      "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/var", "/work",
                      "/mnt", "/media"})


@dataclass
class WipeReport:
    """What a wipe removed (or would remove with dry_run): counts and bytes, never names."""

    files: int = 0
    bytes: int = 0
    dirs: int = 0
    overwritten: int = 0
    failed: int = 0
    """Entries that could not be removed (permissions, busy)."""
    skipped_mounts: int = 0
    """Directories on another filesystem that were left alone."""


def in_container(env: Mapping[str, str] | None = None) -> bool:
    """True only when ST_IN_CONTAINER=1 (set by the image).

    SECURITY: /.dockerenv is deliberately not trusted — shared dev sandboxes carry it too, and
    there wiping /tmp would destroy other people's files.
    """
    env = os.environ if env is None else env
    return env.get("ST_IN_CONTAINER") == "1"


def default_targets(env: Mapping[str, str] | None = None, *, state_dir: Path | None = None,
                    container: bool | None = None) -> list[Path]:
    """The wipe targets of a run's end.

    Inside the image (ST_IN_CONTAINER=1: it owns /tmp): /tmp, /var/tmp, every cache dir named by the env
    (CACHE_ENV_VARS), ~/.cache, ~/.triton, ~/.nv and the state dir's tmp/. Outside a container
    (a shared host): only the state dir's tmp/ and cache/ and env cache dirs that lie under the
    state dir — never the host's /tmp or a user's own caches.
    """
    env = os.environ if env is None else env
    if state_dir is None:
        from entrypoint.workspace.gocryptfs import (
            state_dir as _state_dir,  # one definition of the default
        )

        state_dir = _state_dir(dict(env))
    container = in_container(env) if container is None else container
    targets: list[Path] = [state_dir / "tmp", state_dir / "cache"]
    env_dirs = [Path(env[v]) for v in CACHE_ENV_VARS if env.get(v, "").startswith("/")]
    if container:
        home = Path(env.get("HOME", "/root"))
        targets += [Path("/tmp"), Path("/var/tmp"), *env_dirs,
                    home / ".cache", home / ".triton", home / ".nv"]
    else:
        base = os.path.realpath(state_dir) + os.sep
        targets += [d for d in env_dirs if os.path.realpath(d).startswith(base)]
    unique: list[Path] = []
    for t in targets:
        if t not in unique:
            unique.append(t)
    return unique


_FILE_WRITE = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _overwrite(dir_fd: int, name: str, st: os.stat_result) -> bool:
    # Opened relative to the held parent fd with O_NOFOLLOW, then checked to be the very inode
    # that was listed: a name swapped for a link (or another file) in between is not written.
    fd = os.open(name, _FILE_WRITE, dir_fd=dir_fd)
    try:
        now = os.fstat(fd)
        if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev) or not stat.S_ISREG(now.st_mode) \
                or now.st_nlink != 1:
            return False
        zeros = bytes(min(st.st_size, _CHUNK))
        left = st.st_size
        while left > 0:
            left -= os.write(fd, zeros[:min(left, _CHUNK)])
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _remove_file(dir_fd: int, name: str, st: os.stat_result, report: WipeReport,
                 dry_run: bool) -> None:
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    if not dry_run:
        try:
            # A file with other hard links is only unlinked: overwriting would destroy the data
            # another name still points at.
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and 0 < size <= OVERWRITE_LIMIT \
                    and _overwrite(dir_fd, name, st):
                report.overwritten += 1
            os.unlink(name, dir_fd=dir_fd)
        except OSError:
            report.failed += 1
            return
    report.files += 1
    report.bytes += size


def _wipe_dir_contents(dir_fd: int, dev: int, report: WipeReport, dry_run: bool) -> None:
    """Wipe below the held directory fd; every name is resolved relative to it, one level at
    a time, so a directory swapped for a symlink during the wipe is never followed."""
    try:
        names = os.listdir(dir_fd)
    except OSError:
        report.failed += 1
        return
    for name in names:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue  # vanished meanwhile
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev != dev:
                report.skipped_mounts += 1
                continue
            try:
                child = os.open(name, _DIR_OPEN, dir_fd=dir_fd)
            except OSError:
                report.failed += 1  # replaced by a link (ELOOP/ENOTDIR) or gone
                continue
            try:
                now = os.fstat(child)
                if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
                    report.failed += 1  # swapped between the listing and the open
                    continue
                _wipe_dir_contents(child, dev, report, dry_run)
            finally:
                os.close(child)
            if not dry_run:
                try:
                    os.rmdir(name, dir_fd=dir_fd)
                except OSError:
                    report.failed += 1
                    continue
            report.dirs += 1
        else:
            _remove_file(dir_fd, name, st, report, dry_run)


def wipe(targets: list[Path], *, dry_run: bool = False) -> WipeReport:
    """Wipe each target (dir: its contents; file: itself); missing targets are ignored.

    Returns counts only. Raises ConfigError for a relative target or a system root (/, /usr,
    /home, ...); every other problem is counted in `failed`, never raised, so teardown goes on.
    """
    for target in targets:
        if not target.is_absolute():
            raise ConfigError("wipe targets must be absolute paths")
        if os.path.normpath(target) in _REFUSED:
            raise ConfigError("refusing to wipe a system directory")
    report = WipeReport()
    for target in targets:
        path = os.path.normpath(target)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError:
            report.failed += 1
            continue
        parent, name = os.path.split(path)
        try:
            # The target's own parent is the caller's (trusted) path; below it, only fds.
            parent_fd = os.open(parent or "/", _DIR_OPEN)
        except OSError:
            report.failed += 1
            continue
        try:
            if stat.S_ISDIR(st.st_mode):
                try:
                    fd = os.open(name, _DIR_OPEN, dir_fd=parent_fd)
                except OSError:
                    report.failed += 1
                    continue
                try:
                    _wipe_dir_contents(fd, st.st_dev, report, dry_run)
                finally:
                    os.close(fd)
            else:
                _remove_file(parent_fd, name, st, report, dry_run)
        finally:
            os.close(parent_fd)
    return report
