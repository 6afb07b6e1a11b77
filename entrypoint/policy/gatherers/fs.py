"""Filesystem facts: read-only root, /tmp tmpfs+noexec, the workspace mount, the cipher dir.

Reads /proc/self/mountinfo and stats directories; never lists or reads workspace contents
beyond the presence of `gocryptfs.conf`, and never puts a path into a fact.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from entrypoint.policy.context import PolicyContext
from entrypoint.policy.facts import FsFacts

__all__ = ["Mount", "gather", "mount_of", "parse_mountinfo"]

_GOCRYPTFS_FSTYPE = "fuse.gocryptfs"


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo: where, what type, per-mount and superblock options."""

    mountpoint: str
    fstype: str
    options: tuple[str, ...]
    super_options: tuple[str, ...]


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse /proc/<pid>/mountinfo into Mounts in kernel order (later lines stack on top)."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        parts = line.split()
        if "-" not in parts or len(parts) < 7:
            continue
        sep = parts.index("-")
        if sep + 3 > len(parts):
            continue
        mounts.append(Mount(
            mountpoint=_unescape(parts[4]),
            fstype=parts[sep + 1],
            options=tuple(parts[5].split(",")),
            super_options=tuple(parts[sep + 3].split(",")) if sep + 3 < len(parts) else (),
        ))
    return mounts


def mount_of(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount that holds `path` (longest mountpoint prefix; the topmost when stacked)."""
    target = os.path.realpath(path)
    best: Mount | None = None
    for mount in mounts:
        mp = mount.mountpoint
        inside = target == mp or mp == "/" or target.startswith(mp.rstrip("/") + "/")
        if inside and (best is None or len(mp) >= len(best.mountpoint)):
            best = mount
    return best


def _exact_mount(path: Path, mounts: list[Mount]) -> Mount | None:
    target = os.path.realpath(path)
    found = [m for m in mounts if m.mountpoint == target]
    return found[-1] if found else None


def _free_bytes(*candidates: Path | None) -> int | None:
    for path in candidates:
        probe = path
        while probe is not None and not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if probe is not None and probe.exists():
            st = os.statvfs(probe)
            return st.f_bavail * st.f_frsize
    return None


def _backend(ctx: PolicyContext, ws_mount: Mount | None, cipher_initialized: bool | None,
             cipher_empty: bool) -> str | None:
    if ctx.workspace_dir is None and ctx.cipher_dir is None:
        return None
    if ws_mount is not None:
        return "gocryptfs" if ws_mount.fstype == _GOCRYPTFS_FSTYPE else "plain"
    if ctx.cipher_dir is not None and (cipher_initialized or cipher_empty):
        # not mounted yet: the lifecycle will init (empty dir) or mount this gocryptfs dir
        return "gocryptfs"
    return "plain"


def gather(ctx: PolicyContext) -> FsFacts:
    """Facts about /, the tmp dir, the workspace mountpoint and the cipher dir."""
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    root = mount_of(Path("/"), mounts)
    tmp = mount_of(ctx.tmp_dir, mounts)
    ws_mount = _exact_mount(ctx.workspace_dir, mounts) if ctx.workspace_dir else None
    cipher = ctx.cipher_dir
    exists = initialized = private = None
    mode = None
    empty = False
    if cipher is not None:
        exists = cipher.is_dir()
        if exists:
            st = cipher.stat()
            mode = f"{stat.S_IMODE(st.st_mode):04o}"
            private = stat.S_IMODE(st.st_mode) & 0o066 == 0  # traverse-only (x) lets the unprivileged trainer reach its files
            initialized = (cipher / "gocryptfs.conf").is_file()
            empty = not any(cipher.iterdir())
        else:
            initialized, empty = False, True
    return FsFacts(
        root_readonly=root is not None and ("ro" in root.options or "ro" in root.super_options),
        tmp_fstype=tmp.fstype if tmp else None,
        tmp_tmpfs=tmp is not None and tmp.fstype == "tmpfs",
        tmp_noexec=tmp is not None and "noexec" in tmp.options,
        workspace_configured=ctx.workspace_dir is not None,
        workspace_mounted=ws_mount is not None,
        workspace_fstype=ws_mount.fstype if ws_mount else None,
        workspace_options=ws_mount.options if ws_mount else (),
        workspace_backend=_backend(ctx, ws_mount, initialized, empty),
        cipher_dir_exists=exists,
        cipher_dir_initialized=initialized,
        cipher_dir_mode=mode,
        cipher_dir_private=private,
        free_bytes=_free_bytes(cipher, ctx.workspace_dir),
    )
