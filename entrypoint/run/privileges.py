"""Privilege drop for the training child: no groups, unprivileged ids, no caps, no_new_privs.

`drop_privileges(uid, gid)` runs in the child between fork and exec (subprocess `preexec_fn`);
`trainer_ids()` names the unprivileged identity.
SECURITY: never leaves the child able to regain root: every capability leaves the bounding set
before the uid change, and PR_SET_NO_NEW_PRIVS stops setuid binaries and file caps at exec.
"""

from __future__ import annotations

import ctypes
import os
import pwd
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "DEFAULT_TRAINER_ID",
    "TRAINER_USER",
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


def trainer_ids() -> tuple[int, int]:
    """(uid, gid) of the `trainer` user if it exists, else (10001, 10001)."""
    try:
        entry = pwd.getpwnam(TRAINER_USER)
    except KeyError:
        return DEFAULT_TRAINER_ID, DEFAULT_TRAINER_ID
    return entry.pw_uid, entry.pw_gid


def _prctl(libc: ctypes.CDLL, option: int, arg: int) -> None:
    if libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}) failed")


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text().strip())
    except (OSError, ValueError):
        return 63  # unknown kernel: try every bit; EINVAL past the last one is ignored below


def drop_privileges(uid: int, gid: int) -> None:
    """Irreversibly become (uid, gid) with no supplementary groups, an empty capability
    bounding set, no ambient capabilities and no_new_privs set.

    Meant for a freshly forked child (preexec). Raises OSError if any step fails, which makes
    subprocess refuse to exec the child (fail closed). `uid`/`gid` 0 are refused (ValueError).
    """
    if uid == 0 or gid == 0:
        raise ValueError("refusing to drop privileges to root")
    libc = ctypes.CDLL(None, use_errno=True)
    # Bounding set first: PR_CAPBSET_DROP needs CAP_SETPCAP, which the uid change removes.
    for cap in range(_last_cap() + 1):
        if libc.prctl(_PR_CAPBSET_DROP, ctypes.c_ulong(cap), ctypes.c_ulong(0),
                      ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
            err = ctypes.get_errno()
            if err == _EINVAL:  # cap beyond this kernel's last one
                break
            raise OSError(err, "could not drop a capability from the bounding set")
    try:
        _prctl(libc, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as exc:
        if exc.errno != _EINVAL:  # EINVAL: kernel < 4.3 has no ambient set, nothing to clear
            raise
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # clears permitted/effective caps (no SECBIT_KEEP_CAPS)
    _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise OSError(1, "privilege drop did not take effect")


def preexec_drop(uid: int, gid: int) -> Callable[[], None]:
    """A `preexec_fn` for subprocess that calls `drop_privileges(uid, gid)`."""

    def _drop() -> None:
        drop_privileges(uid, gid)

    return _drop
