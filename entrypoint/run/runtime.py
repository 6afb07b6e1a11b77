"""The training child's interpreter (ST_TRAINER_PYTHON): one the training uid can run, never change.

`trainer_python(env)` names it (ST_TRAINER_PYTHON, else this interpreter); `runtime_problem(python,
uid)` says why it must not be used for a child dropped to `uid` (None when it may), and
`check_trainer_python` turns that into a ConfigError (exit 2) before the child starts.
The native checkout's venv usually sits where uid 10001 cannot reach it (under /root), so
`make trainer-runtime` (scripts/trainer-runtime.sh) builds a root-owned copy under
/opt/secure-trainer/runtime; the image's /opt/venv already qualifies.
SECURITY: the child executes this interpreter and imports everything below its venv. A file or
directory there (or on the way to it, or behind one of its links) that the trainer or another
local user could write would let a hostile trainer plant code that a later run executes with
that run's data, so everything must be root-owned and not writable by group or others. Checks
use lstat only: the candidate interpreter is never run by root here, and links are resolved
hop by hop, each hop's directory checked.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from entrypoint.errors import ConfigError

__all__ = ["check_trainer_python", "runtime_problem", "trainer_python", "trusted_file"]

_MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit: a link cycle is refused, not followed forever
_UNSAFE_BITS = stat.S_IWGRP | stat.S_IWOTH


def trainer_python(env: Mapping[str, str]) -> Path:
    """ST_TRAINER_PYTHON (an absolute path), else the supervisor's own interpreter.

    Raises ConfigError for a relative path (it would resolve against the workspace, the
    child's cwd, which the trainer writes).
    """
    raw = env.get("ST_TRAINER_PYTHON", "").strip()
    if not raw:
        return Path(sys.executable)
    path = Path(raw)
    if not path.is_absolute():
        raise ConfigError("ST_TRAINER_PYTHON must be an absolute path")
    return path


def check_trainer_python(python: Path, uid: int) -> None:
    """Raise ConfigError unless `python` is safe to run as the training child of `uid`."""
    problem = runtime_problem(python, uid)
    if problem is not None:
        raise ConfigError(f"the trainer's interpreter (ST_TRAINER_PYTHON) {problem}; build a "
                          "root-owned runtime with `make trainer-runtime`, or set "
                          "ST_TRAIN_UID=none for a native dev run")


def runtime_problem(python: Path, uid: int) -> str | None:
    """Why `python` must not run as `uid`'s trainer, or None.

    Checked: every directory on the way to it and to each link target is root-owned, not
    group/other-writable and traversable by others; the interpreter is a root-owned regular
    file, executable by others; when it is a venv's, the whole venv tree (every entry, links
    followed the same way) and its base interpreter's stdlib directory. Not checked: the files
    inside the base interpreter's stdlib (a system or image path, not something we build).
    """
    try:
        real = _safe_chain(python, uid)
        st = os.lstat(real)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & _UNSAFE_BITS:
            return "is not a root-owned file that only root may change"
        if not st.st_mode & stat.S_IXOTH:
            return "is not executable by the training user"
        venv = _venv_root(python)
        if venv is not None:
            _check_tree(venv, uid)
            _check_base_stdlib(venv, uid)
    except _Unsafe as err:
        return str(err)
    except OSError:
        return "cannot be inspected"
    return None


def trusted_file(path: Path, uid: int) -> Path | None:
    """The real path of `path` when it is a regular file that root owns and no group or other
    user may write, reached only through root-owned directories that no group or other may
    change (links resolved hop by hop) and that `uid` can traverse; else None. Used for a
    shared library the training child preloads (entrypoint/allocator.py)."""
    try:
        real = _safe_chain(path, uid)
        st = os.lstat(real)
    except (_Unsafe, OSError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & _UNSAFE_BITS:
        return None
    return real


class _Unsafe(Exception):
    """One reason the runtime is unsafe (no path in the text: messages stay one generic line)."""


def _check_dir(st: os.stat_result, uid: int) -> None:
    if st.st_uid != 0 or st.st_mode & _UNSAFE_BITS:
        raise _Unsafe("lies in a directory another user than root may change")
    if st.st_uid != uid and not st.st_mode & stat.S_IXOTH:
        raise _Unsafe("is not reachable by the training user")


def _safe_chain(path: Path, uid: int) -> Path:
    """Walk `path` from / component by component with lstat, following links hop by hop;
    every directory passed must be root-owned and unwritable by others. The real path."""
    if not path.is_absolute():
        raise _Unsafe("is not an absolute path")
    pending = list(path.parts[1:])
    current = Path("/")
    _check_dir(os.lstat(current), uid)
    hops = 0
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent
            continue
        candidate = current / name
        st = os.lstat(candidate)
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise _Unsafe("has too many links")
            target = Path(os.readlink(candidate))
            if target.is_absolute():
                current = Path("/")
            pending = [*target.parts[1:], *pending] if target.is_absolute() \
                else [*target.parts, *pending]
            continue
        if pending:  # a directory on the way
            if not stat.S_ISDIR(st.st_mode):
                raise _Unsafe("is not below a directory")
            _check_dir(st, uid)
        current = candidate
    return current


def _venv_root(python: Path) -> Path | None:
    """The venv `python` belongs to (the dir holding pyvenv.cfg: bin/.. or bin/), or None."""
    for candidate in (python.parent.parent, python.parent):
        if (candidate / "pyvenv.cfg").is_file():
            return candidate
    return None


def _check_tree(root: Path, uid: int) -> None:
    """Every entry below `root` is root-owned and not writable by group or others; a link's
    target passes the same chain check (a link must not lead into a writable place)."""
    _check_dir(os.lstat(root), uid)
    for parent, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            entry = Path(parent) / name
            st = os.lstat(entry)
            if stat.S_ISLNK(st.st_mode):
                _safe_chain(entry, uid)
                continue
            if st.st_uid != 0 or st.st_mode & _UNSAFE_BITS:
                raise _Unsafe("has a file or folder another user than root may change")


def _check_base_stdlib(venv: Path, uid: int) -> None:
    """The base interpreter named by pyvenv.cfg `home`: its directory chain and stdlib dir."""
    cfg = {}
    for line in (venv / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            cfg[key.strip()] = value.strip()
    home = Path(cfg.get("home", ""))
    if not home.is_absolute():
        raise _Unsafe("belongs to a venv without an absolute base interpreter")
    _check_dir(os.lstat(_safe_chain(home, uid)), uid)
    major_minor = ".".join(cfg.get("version", cfg.get("version_info", "")).split(".")[:2])
    stdlib = home.parent / "lib" / f"python{major_minor}"
    if major_minor and stdlib.is_dir():
        _check_dir(os.lstat(_safe_chain(stdlib, uid)), uid)
