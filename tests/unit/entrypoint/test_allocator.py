"""Which allocator library the trainer preloads, and when it refuses one (entrypoint/allocator.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from entrypoint import allocator
from entrypoint.allocator import TCMALLOC_PATHS, child_allocator_env, preload_library

pytestmark = pytest.mark.root  # a trusted file must be root-owned: the tests create and chown


def _lib(folder: Path, mode: int = 0o644) -> Path:
    path = folder / "liballoc.so"
    path.write_bytes(b"\x7fELF")
    path.chmod(mode)
    return path


def test_a_root_owned_unwritable_library_is_picked(root_safe_dir: Path) -> None:
    lib = _lib(root_safe_dir)
    assert preload_library({}, 0, candidates=[lib], gpu_present=False) == lib
    link = root_safe_dir / "liballoc.so.4"
    link.symlink_to(lib.name)
    assert preload_library({}, 0, candidates=[link], gpu_present=False) == lib  # the real path


@pytest.mark.parametrize("spoil", ["group-writable", "world-writable", "not-root", "dir-writable",
                                   "not-a-file", "missing", "under-tmp"])
def test_a_library_anyone_but_root_could_change_is_refused(root_safe_dir: Path, spoil: str) -> None:
    """SECURITY: a preloaded library runs inside the process that sees decrypted data."""
    lib = _lib(root_safe_dir)
    if spoil == "group-writable":
        lib.chmod(0o664)
    elif spoil == "world-writable":
        lib.chmod(0o646)
    elif spoil == "not-root":
        os.chown(lib, 1000, 1000)
    elif spoil == "dir-writable":
        root_safe_dir.chmod(0o775)
    elif spoil == "not-a-file":
        lib.unlink()
        lib.mkdir()
    elif spoil == "missing":
        lib.unlink()
    else:  # /tmp is world-writable: anyone may swap what lies below it
        lib = Path(tempfile.mkdtemp()) / "liballoc.so"
        lib.write_bytes(b"x")
    assert preload_library({}, 0, candidates=[lib], gpu_present=False) is None


def test_opt_out_and_gpu_hosts_keep_glibc(root_safe_dir: Path) -> None:
    lib = _lib(root_safe_dir)
    assert preload_library({"ST_ALLOCATOR": "system"}, 0, candidates=[lib],
                           gpu_present=False) is None
    assert preload_library({}, 0, candidates=[lib], gpu_present=True) is None


def test_the_training_uid_must_reach_it(root_safe_dir: Path) -> None:
    root_safe_dir.chmod(0o750)  # root only: uid 10001 cannot traverse
    lib = _lib(root_safe_dir)
    assert preload_library({}, 0, candidates=[lib], gpu_present=False) == lib
    assert preload_library({}, 10001, candidates=[lib], gpu_present=False) is None


def test_the_system_tcmalloc_is_found_for_the_training_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/system-deps.sh and the image install Debian's libtcmalloc-minimal4."""
    monkeypatch.setattr(allocator, "_gpu_present", lambda: False)
    real = preload_library({}, 10001)
    assert real is not None and real.name.startswith("libtcmalloc_minimal.so.4")
    assert real == TCMALLOC_PATHS[0].resolve() or real == TCMALLOC_PATHS[1].resolve()
    assert child_allocator_env({}, 10001) == {"LD_PRELOAD": str(real)}
    assert child_allocator_env({"ST_ALLOCATOR": "system"}, 10001) == {}
