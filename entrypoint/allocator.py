"""The trainer's memory allocator: tcmalloc, preloaded, on hosts without an NVIDIA GPU.

Why: a CPU training step allocates and frees gigabytes of activations. glibc malloc gives
blocks above its mmap threshold back to the kernel when they are freed, so every step faults
them in again: a 256 px SD1.5-size step here took ~1M minor page faults and spent ~16 % of its
CPU time in the kernel. tcmalloc keeps freed spans for reuse: on the same step it cut the faults
~4x and the step time ~20 %, with a lower peak RSS (docs/trainer.md, `make bench`). An
allocator changes no arithmetic. GPU hosts keep glibc (their activations live in CUDA memory,
and this path was never measured there).

Where it applies: `train`/`train-llm` started directly re-exec themselves once with LD_PRELOAD
set (`reexec_with_allocator`, before anything is imported or read); under `run` the supervisor
puts LD_PRELOAD in the child's constructed environment (`child_allocator_env`), and the child
never re-execs. `ST_ALLOCATOR=system` keeps glibc malloc; an LD_PRELOAD the user already
set is left alone.
SECURITY: the library is preloaded into a process that sees the decrypted data, so only a
fixed system path is used, and only when it and every directory on the way to it are root-owned
and unwritable by others (`runtime.trusted_file`); nothing from the environment names it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from entrypoint.run.runtime import trusted_file

__all__ = ["CHOICE_VAR", "TCMALLOC_PATHS", "active_allocator", "child_allocator_env",
           "preload_library", "reexec_with_allocator"]

CHOICE_VAR = "ST_ALLOCATOR"
"""`system` keeps glibc malloc; anything else (or unset) lets the trainer preload tcmalloc."""
TCMALLOC_PATHS = (
    Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"),  # Debian libtcmalloc-minimal4
    Path("/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4"),
)
TRAINER_COMMANDS = ("train", "train-llm")
RUN_CHILD_ENV = "SECURE_TRAINER_RUN_CHILD"  # coupling: entrypoint/run/train_register.py


def _gpu_present() -> bool:
    """An NVIDIA device node exists (the trainer may run on CUDA: keep glibc there)."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


def preload_library(env: Mapping[str, str], uid: int, *,
                    candidates: Sequence[Path] = TCMALLOC_PATHS,
                    gpu_present: bool | None = None) -> Path | None:
    """The allocator library a trainer running as `uid` should preload, or None (glibc).

    None when `env` asks for the system allocator, when an NVIDIA GPU is present, or when no
    candidate is a trusted root-owned file. Raises nothing.
    """
    if env.get(CHOICE_VAR, "").strip().lower() == "system":
        return None
    if gpu_present if gpu_present is not None else _gpu_present():
        return None
    for candidate in candidates:
        real = trusted_file(candidate, uid)
        if real is not None:
            return real
    return None


def child_allocator_env(env: Mapping[str, str], uid: int) -> dict[str, str]:
    """Variables for `run`'s training child (whose environment is built from scratch):
    LD_PRELOAD of the library `preload_library` picks for `uid`, else nothing. The child never
    decides again by itself (it sees RUN_CHILD_ENV, see `reexec_with_allocator`)."""
    library = preload_library(env, uid)
    return {} if library is None else {"LD_PRELOAD": str(library)}


def reexec_with_allocator(args: Sequence[str]) -> None:
    """Replace this process with itself under LD_PRELOAD=tcmalloc when `args` start a trainer
    command and `preload_library` picks one; return (doing nothing) otherwise.

    Called first thing in the console entry point, so nothing has been imported, read or
    written yet. No loop: the new image finds LD_PRELOAD set. Raises OSError only if exec fails.
    """
    if not args or args[0] not in TRAINER_COMMANDS or "--help" in args or "-h" in args:
        return
    if os.environ.get("LD_PRELOAD") or os.environ.get(RUN_CHILD_ENV) == "1":
        return  # the user's own preload, or `run` already chose for its child
    library = preload_library(os.environ, os.getuid())
    if library is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), {**os.environ, "LD_PRELOAD": str(library)})


def active_allocator() -> str:
    """`tcmalloc` when it is mapped into this process, else `system` (for the log line)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            return "tcmalloc" if any("libtcmalloc" in line for line in maps) else "system"
    except OSError:
        return "system"
