"""Privilege drop for the training child: no groups, unprivileged ids, no caps (bounding,
inheritable, ambient, permitted, effective), no_new_privs, no core dumps.

`PreparedDrop(uid, gid)` is built in the parent — it loads libc and reads the last capability
number there — so `apply()` in the forked child only makes system calls: no dlopen (whose
loader lock another thread, e.g. the Vault renewal thread, may hold at fork time), no file I/O.
`drop_privileges(uid, gid)` does both at once, for a process without threads.
`trainer_ids()` names the unprivileged identity.
SECURITY: never leaves the child able to regain root: every capability leaves the bounding set
before the uid change, the inheritable and ambient sets are emptied (a uid change keeps the
inheritable set), and PR_SET_NO_NEW_PRIVS stops setuid binaries and file caps at exec.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import resource
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "DEFAULT_TRAINER_ID",
    "TRAINER_USER",
    "PreparedDrop",
    "drop_privileges",
    "preexec_drop",
    "trainer_ids",
]

DEFAULT_TRAINER_ID = 10001  # coupling: Dockerfile USER/useradd, policy_cmd _DEFAULT_TRAINER_IDS
TRAINER_USER = "trainer"

# linux/prctl.h
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_EINVAL = 22
_LINUX_CAPABILITY_VERSION_3 = 0x20080522  # linux/capability.h


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def trainer_ids() -> tuple[int, int]:
    """(uid, gid) of the `trainer` user if it exists, else (10001, 10001)."""
    try:
        entry = pwd.getpwnam(TRAINER_USER)
    except KeyError:
        return DEFAULT_TRAINER_ID, DEFAULT_TRAINER_ID
    return entry.pw_uid, entry.pw_gid


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text().strip())
    except (OSError, ValueError):
        return 63  # unknown kernel: try every bit; EINVAL past the last one is ignored below


class PreparedDrop:
    """A privilege drop to (uid, gid), prepared in the parent and applied in the fork child."""

    def __init__(self, uid: int, gid: int) -> None:
        """Raises ValueError for uid/gid 0 (refusing to "drop" to root)."""
        if uid == 0 or gid == 0:
            raise ValueError("refusing to drop privileges to root")
        self.uid, self.gid = uid, gid
        self._libc = ctypes.CDLL(None, use_errno=True)  # SECURITY: dlopen here, never in the child
        self._prctl = self._libc.prctl
        self._capset = self._libc.capset
        self._last_cap = _last_cap()
        self._header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        self._data = (_CapData * 2)()  # all zero: no effective, permitted or inheritable cap
        self._args = [ctypes.c_ulong(v) for v in range(max(self._last_cap, 63) + 2)]
        self._zero = ctypes.c_ulong(0)

    def _call(self, option: int, arg: int) -> int:
        zero = self._zero
        return int(self._prctl(option, self._args[arg], zero, zero, zero))

    def apply(self) -> None:
        """Irreversibly become (uid, gid): no supplementary groups, an empty capability
        bounding set, no inheritable or ambient capabilities, no_new_privs, RLIMIT_CORE 0.

        Only system calls (no dlopen, no file I/O). Raises OSError if any step fails, which
        makes subprocess refuse to exec the child (fail closed).
        """
        # Bounding set first: PR_CAPBSET_DROP needs CAP_SETPCAP, which the uid change removes.
        for cap in range(self._last_cap + 1):
            if self._call(_PR_CAPBSET_DROP, cap) != 0:
                err = ctypes.get_errno()
                if err == _EINVAL:  # cap beyond this kernel's last one
                    break
                raise OSError(err, "could not drop a capability from the bounding set")
        if self._call(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL) != 0 \
                and ctypes.get_errno() != _EINVAL:  # EINVAL: kernel < 4.3, no ambient set
            raise OSError(ctypes.get_errno(), "could not clear the ambient capabilities")
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash dumps no decoded image
        os.setgroups([])
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)  # clears permitted/effective, not inheritable
        if self._capset(ctypes.byref(self._header), self._data) != 0:
            raise OSError(ctypes.get_errno(), "could not clear the inheritable capabilities")
        if self._call(_PR_SET_NO_NEW_PRIVS, 1) != 0:
            raise OSError(ctypes.get_errno(), "could not set no_new_privs")
        ids = (self.uid, self.uid, self.uid)
        gids = (self.gid, self.gid, self.gid)
        if os.getresuid() != ids or os.getresgid() != gids or os.getgroups():
            raise OSError(1, "privilege drop did not take effect")


def drop_privileges(uid: int, gid: int) -> None:
    """Prepare and apply a `PreparedDrop` at once (for a process with no other thread).

    Raises OSError if any step fails, ValueError for uid/gid 0.
    """
    PreparedDrop(uid, gid).apply()


def preexec_drop(uid: int, gid: int) -> Callable[[], None]:
    """A `preexec_fn` for subprocess that applies a drop prepared now, before the fork."""
    return PreparedDrop(uid, gid).apply
