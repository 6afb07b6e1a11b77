"""Tie a helper process's life to the supervisor: PR_SET_PDEATHSIG, prepared before the fork.

`ParentDeathSignal(sig)` loads libc and resolves `prctl` in the parent; its `apply()` (a
subprocess `preexec_fn`) then only makes system calls in the fork child — no dlopen while
another thread (the Vault renewal thread) may hold the loader lock.
SECURITY: never lets the child outlive a parent that died before the signal was armed: after
arming it checks that its parent is still the process that forked it, else it exits at once.
Note: the kernel sends the signal when the *thread* that forked the child exits, so the
supervisor must start tied helpers from its main thread.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["ParentDeathSignal"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_EXIT_ORPHANED = 125


class ParentDeathSignal:
    """A `preexec_fn` that makes the child receive `sig` when the forking thread dies."""

    def __init__(self, sig: int) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)  # SECURITY: dlopen here, never in the child
        self._prctl = self._libc.prctl
        self._sig = ctypes.c_ulong(sig)
        self._zero = ctypes.c_ulong(0)
        self._parent = os.getpid()

    def apply(self) -> None:
        """Arm the signal; exit the child if the parent is already gone (fail closed).

        Only system calls. Raises OSError if prctl fails (subprocess then refuses the exec).
        """
        zero = self._zero
        if int(self._prctl(_PR_SET_PDEATHSIG, self._sig, zero, zero, zero)) != 0:
            raise OSError(ctypes.get_errno(), "could not set the parent-death signal")
        if os.getppid() != self._parent:  # the parent died between fork and prctl
            os._exit(_EXIT_ORPHANED)
