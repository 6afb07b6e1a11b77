"""A hostile process swaps a directory for a symlink (to a victim folder) again and again while
the wipe runs: the victim keeps every file. Real threads, real files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from entrypoint.run.wipe import wipe


def _fill(d: Path, n: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (d / f"f{i}").write_bytes(b"x" * 64)


def test_symlink_swap_during_wipe_never_reaches_the_victim(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    _fill(victim, 50)
    target = tmp_path / "scratch"
    stop = threading.Event()

    def swapper() -> None:
        # The attacker's loop: scratch/sub flips between a real directory and a link to the
        # victim, so a wipe that checks a name and then walks it by path can be redirected.
        sub, parked = target / "sub", target / "parked"
        while not stop.is_set():
            try:
                os.rename(sub, parked)
                os.symlink(victim, sub)
                os.unlink(sub)
                os.rename(parked, sub)
            except OSError:
                pass

    for _ in range(60):
        _fill(target / "sub", 20)
        thread = threading.Thread(target=swapper, daemon=True)
        stop.clear()
        thread.start()
        wipe([target])
        stop.set()
        thread.join()
        for leftover in (target / "sub", target / "parked"):
            if leftover.is_symlink():
                leftover.unlink()
        wipe([target])
        assert sorted(p.name for p in victim.iterdir()) == sorted(f"f{i}" for i in range(50))
        assert all(p.read_bytes() == b"x" * 64 for p in victim.iterdir())
