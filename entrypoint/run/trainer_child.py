"""The training child of `run`: minimal env, privilege drop, parent-death signal, redacted output.

`run_trainer(...)` starts `python -I -m entrypoint.cli train ...` (or `train-llm ...`) inside the workspace and streams
its redacted output, with the interpreter `TrainerLauncher` names (ST_TRAINER_PYTHON, checked
by `entrypoint/run/runtime.py` before a dropped child starts); `child_preexec(ids)` is the fork-side setup (drop, then PR_SET_PDEATHSIG),
prepared before the fork so the child makes system calls only (no dlopen while threads run).
`-I` keeps the workspace (the cwd, which the trainer can write) and PYTHON* variables off
`sys.path`, so a planted `entrypoint/` or `torch/` folder there is never imported.
SECURITY: the child gets no VAULT_* or ST_* variable, all caches point into the workspace's
`tmp/<run-id>`, and it is SIGKILLed by the kernel when `run` dies (even by SIGKILL), so no
orphan trainer keeps writing into the workspace.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from entrypoint.allocator import child_allocator_env
from entrypoint.errors import ConfigError, DataRejected, SecureTrainerError
from entrypoint.redact import Redactor
from entrypoint.run.privileges import PreparedDrop
from entrypoint.run.runtime import check_trainer_python
from entrypoint.run.signals import deferred_signals

__all__ = ["CACHE_VARS", "CHILD_ERRORS", "TRAINER_COMMANDS", "TrainerLauncher", "TrainerSpawner", "child_preexec",
           "run_trainer", "trainer_argv", "trainer_env", "usable_by"]

# coupling: entrypoint/run/wipe.py CACHE_ENV_VARS (what a wipe looks for).
CACHE_VARS = ("TMPDIR", "HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME", "TRITON_CACHE_DIR",
              "PIP_CACHE_DIR", "CUDA_CACHE_PATH", "MPLCONFIGDIR", "TORCHINDUCTOR_CACHE_DIR")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Exit codes of the child that keep their meaning for the user (config / data problems).
CHILD_ERRORS: dict[int, type[SecureTrainerError]] = {2: ConfigError, 8: DataRejected}
_TERM_GRACE_S = 30.0


class TrainerSpawner(Protocol):
    """Starts the training child and returns its exit code (`run_trainer` in production).

    The lifecycle takes one as a constructor dependency, so a test can run a hostile trainer
    inside a real run without any switch in production code.
    """

    def __call__(self, args: list[str], *, cwd: Path, tmp: Path, ids: tuple[int, int] | None,
                 extra_env: dict[str, str], redact: list[str],
                 echo: Callable[[str], None], command: str = "train") -> int:
        """Run the trainer `command` (`train` or `train-llm`) with `args` in `cwd` as `ids`;
        echo redacted output; exit code. `run` passes `command` only for train-llm."""
        ...


def usable_by(path: Path, uid: int) -> bool:
    """True when every directory on the way to `path` lets `uid` (as 'other') traverse it."""
    for parent in [*reversed(path.resolve().parents), path.resolve()]:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            return False
    return True


TRAINER_COMMANDS = ("train", "train-llm")


def trainer_argv(args: list[str], command: str = "train", python: Path | None = None) -> list[str]:
    """The child's argv: `python` (default: this interpreter), isolated (`-I`: no cwd, PYTHON*
    env or user site on sys.path), running `entrypoint.cli COMMAND ARGS` (`train`/`train-llm`)."""
    if command not in TRAINER_COMMANDS:
        raise ConfigError("unknown trainer command")
    return [str(python or sys.executable), "-I", "-m", "entrypoint.cli", command, *args]


def trainer_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's whole environment: PATH, locale, offline flags, every cache in `tmp`."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": str(tmp), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
           # `train` under `run`: run seals and registers; train must not register again.
           "SECURE_TRAINER_RUN_CHILD": "1"}
    for var in CACHE_VARS:
        env[var] = str(tmp)
    if "OMP_NUM_THREADS" in os.environ:  # a thread cap is a resource choice, not a secret
        env["OMP_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
    env.update(extra or {})
    return env


def child_preexec(ids: tuple[int, int] | None) -> Callable[[], None]:
    """A subprocess `preexec_fn`: drop to `ids` (if given), then ask for SIGKILL on parent death.

    The order matters: the kernel clears the parent-death signal on any euid/egid change, so it
    is set after the drop. A parent that died before prctl took effect makes the child refuse
    to exec (OSError → subprocess raises), so no orphan can start either.
    """
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child should not dlopen
    drop = PreparedDrop(*ids) if ids is not None else None
    sig, zero = ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0)

    def _setup() -> None:
        if drop is not None:
            drop.apply()
        if libc.prctl(_PR_SET_PDEATHSIG, sig, zero, zero, zero) != 0:
            raise OSError(ctypes.get_errno(), "could not set the parent-death signal")
        if os.getppid() != parent:
            raise OSError(3, "the parent died before the trainer started")

    return _setup


@dataclass(frozen=True)
class TrainerLauncher:
    """The production `TrainerSpawner`: `run_trainer` with the configured interpreter."""

    python: Path
    """ST_TRAINER_PYTHON, else the supervisor's interpreter (`runtime.trainer_python`)."""

    def __call__(self, args: list[str], *, cwd: Path, tmp: Path, ids: tuple[int, int] | None,
                 extra_env: dict[str, str], redact: list[str],
                 echo: Callable[[str], None], command: str = "train") -> int:
        """`run_trainer` with `python` as the child's interpreter."""
        return run_trainer(args, cwd=cwd, tmp=tmp, ids=ids, extra_env=extra_env, redact=redact,
                           echo=echo, command=command, python=self.python)


def run_trainer(args: list[str], *, cwd: Path, tmp: Path, ids: tuple[int, int] | None,
                extra_env: dict[str, str], redact: list[str],
                echo: Callable[[str], None], command: str = "train",
                python: Path | None = None) -> int:
    """Run `secure-trainer COMMAND ARGS` (`train` or `train-llm`) in `cwd` with `python`
    (default: this interpreter), echo its redacted output, return its exit code.

    On any exception (SIGTERM → `Interrupted` included) the child gets SIGTERM, then SIGKILL
    after a grace period, and is reaped before the exception propagates, so teardown never
    races a live trainer. Raises ConfigError when `ids` are given and the interpreter is
    unreachable for them or could be changed by anyone but root (`runtime.runtime_problem`).
    """
    python = python or Path(sys.executable)
    if ids:
        check_trainer_python(python, ids[0])
    redactor = Redactor()
    for value in redact:
        redactor.register(value)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with deferred_signals():  # a signal between fork and assignment must not lose the pid
            proc = subprocess.Popen(
                trainer_argv(args, command, python), cwd=cwd,
                env=trainer_env(tmp, {**child_allocator_env(os.environ, ids[0] if ids
                                                            else os.getuid()), **extra_env}),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                # The hook only calls prctl/set*id (no locks taken in Python code); the Vault
                # renewal thread cannot leave it deadlocked.
                # Its own session: a terminal's signals reach the supervisor only, and the whole
                # group can be stopped at once.
                start_new_session=True,
                preexec_fn=child_preexec(ids))  # noqa: PLW1509
        assert proc.stdout is not None
        for raw in proc.stdout:
            echo(redactor.scrub(raw.decode("utf-8", "replace").rstrip("\n")))
        return proc.wait()
    except BaseException:
        if proc is not None:
            with deferred_signals():
                _stop(proc)
        raise


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=_TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
