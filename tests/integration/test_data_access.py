"""grant_group_read: the unprivileged trainer can read exactly its run's inputs (real uid switch)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.workspace.grants import grant_group_read

pytestmark = [pytest.mark.integration, pytest.mark.root]
UID = GID = 10001


@pytest.fixture
def root() -> Iterator[Path]:
    # Like the workspace mount root: others may traverse (0711) but not list.
    path = Path(tempfile.mkdtemp(prefix="st-grant-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _readable_by_trainer(path: Path) -> bool:
    pid = os.fork()
    if pid == 0:  # child: become the training user, then try to read
        try:
            os.setgroups([])
            os.setgid(GID)
            os.setuid(UID)
            if path.is_dir():
                os.listdir(path)
            else:
                path.read_bytes()
            os._exit(0)
        except OSError:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _owner_only(path: Path, mode_dir: int = 0o700, mode_file: int = 0o600) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(mode_dir if p.is_dir() else mode_file)


def test_trainer_reads_granted_inputs_and_nothing_else(root: Path) -> None:
    model = root / "models" / "tiny" / "unet"
    data = root / "datasets" / "people" / "10_subject"
    other = root / "datasets" / "other-project"
    for d in (model, data, other):
        d.mkdir(parents=True)
    (model / "weights.safetensors").write_bytes(b"w")
    (data / "a.png").write_bytes(b"img")
    (other / "secret.png").write_bytes(b"img")
    outside = Path(tempfile.mkdtemp(prefix="st-grant-out-"))
    try:
        (outside / "f").write_bytes(b"x")
        _owner_only(root / "models")
        _owner_only(root / "datasets")
        assert not _readable_by_trainer(data / "a.png")

        granted = grant_group_read([root / "models" / "tiny", data, outside], root=root, gid=GID,
                                   listable=[data.parent])

        assert granted >= 5
        assert _readable_by_trainer(model / "weights.safetensors")
        assert _readable_by_trainer(data / "a.png") and _readable_by_trainer(data)
        # Parents are traversable, not listable; the other project stays closed.
        assert not _readable_by_trainer(root / "datasets")
        # The train_data_dir may be listed (its <N>_<name> folders), nothing more below it.
        assert _readable_by_trainer(data.parent)
        (data.parent / "5_unused").mkdir(mode=0o700)
        assert not _readable_by_trainer(data.parent / "5_unused")
        assert not _readable_by_trainer(other / "secret.png")
        # Never 'other' bits, never write; paths outside the workspace are left alone.
        for p in [*(root / "models").rglob("*"), *data.rglob("*")]:
            mode = stat.S_IMODE(p.lstat().st_mode)
            assert mode & 0o007 == 0 and mode & stat.S_IWGRP == 0
        assert (outside / "f").stat().st_gid != GID
    finally:
        shutil.rmtree(outside)
