"""No core dumps of the supervisor or the trainer: both hold decoded images, and the
supervisor the Vault token and, briefly, the workspace passphrase.

`forbid_core_dumps()` sets RLIMIT_CORE to 0 (soft and hard, so nothing it starts can raise
it again) and PR_SET_DUMPABLE to 0 (also stops a core_pattern pipe helper and ptrace by
non-root). The training child inherits the zero limit and sets it again itself
(`trainer_child.py`); its dumpable flag resets at exec, which the zero hard limit covers.
Must never raise a limit.
"""

from __future__ import annotations

import ctypes
import resource

__all__ = ["forbid_core_dumps", "is_dumpable"]

_PR_GET_DUMPABLE = 3  # linux/prctl.h
_PR_SET_DUMPABLE = 4


def forbid_core_dumps() -> None:
    """RLIMIT_CORE = 0 (hard too) and not dumpable, for this process. Raises OSError."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) != 0:
        raise OSError(ctypes.get_errno(), "could not make the process non-dumpable")


def is_dumpable() -> bool:
    """PR_GET_DUMPABLE of this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_GET_DUMPABLE, ctypes.c_ulong(0), ctypes.c_ulong(0),
                           ctypes.c_ulong(0), ctypes.c_ulong(0)))
