"""Read-only view of the mount table (/proc/self/mountinfo) and of FUSE daemon processes.

SECURITY: never mounts or unmounts anything and never returns mount sources (they can be
data paths) to callers that print.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MountEntry", "fuse_daemon_pid", "is_fuse_mounted", "mount_table", "mounts_under"]

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class MountEntry:
    """One line of mountinfo: where, what filesystem type, from which source."""

    mountpoint: str
    fstype: str
    source: str


def mount_table(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[MountEntry]:
    """Every mount of this process's mount namespace; [] if mountinfo cannot be read."""
    try:
        text = mountinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    entries = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if not sep or len(fields) < 5 or len(rest) < 2:
            continue
        entries.append(MountEntry(_unescape(fields[4]), rest[0], _unescape(rest[1])))
    return entries


def _canonical(path: Path) -> str:
    # realpath without strict: a dead FUSE mount (ENOTCONN) must still be recognised.
    return os.path.realpath(os.path.abspath(path))


def is_fuse_mounted(mountpoint: Path, fstype: str) -> bool:
    """True when a mount of type `fstype` (e.g. fuse.gocryptfs) sits exactly at `mountpoint`."""
    target = _canonical(mountpoint)
    return any(e.mountpoint == target and e.fstype == fstype for e in mount_table())


def mounts_under(root: Path) -> list[str]:
    """Mountpoints strictly below `root` (deepest first), for walkers that must not cross them."""
    base = _canonical(root).rstrip("/") + "/"
    found = [e.mountpoint for e in mount_table() if e.mountpoint.startswith(base)]
    return sorted(set(found), key=len, reverse=True)


def fuse_daemon_pid(mountpoint: Path, program: str) -> int | None:
    """PID of the `program` process whose last argv item is `mountpoint`, or None."""
    target = _canonical(mountpoint)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # the process exited while we looked
        argv = [a for a in argv if a]
        if len(argv) >= 2 and os.path.basename(os.fsdecode(argv[0])) == program \
                and _canonical(Path(os.fsdecode(argv[-1]))) == target:
            return int(name)
    return None
