"""grant_group_read: the unprivileged trainer can read exactly its run's inputs (real uid switch)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.workspace.grants import grant_group_read, revoke_group_read

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


def test_revoke_takes_every_grant_back_and_keeps_the_root_mode(root: Path) -> None:
    """Grants to A, then B; revoke; then A again: B stays closed (grants never accumulate)."""
    a = root / "datasets" / "a" / "10_x"
    b = root / "datasets" / "b" / "10_x"
    for d in (a, b):
        d.mkdir(parents=True)
        (d / "img.png").write_bytes(b"img")
    _owner_only(root / "datasets")
    for grant in (a, b):
        grant_group_read([grant], root=root, gid=GID, listable=[grant.parent])
        assert _readable_by_trainer(grant / "img.png")
        assert revoke_group_read(root, GID) >= 3
        assert not _readable_by_trainer(grant / "img.png")
    grant_group_read([a], root=root, gid=GID, listable=[a.parent])
    assert _readable_by_trainer(a / "img.png") and not _readable_by_trainer(b / "img.png")
    revoke_group_read(root, GID)
    assert [p for p in (root / "datasets").rglob("*") if p.lstat().st_gid == GID] == []
    assert stat.S_IMODE(root.stat().st_mode) == 0o711


@pytest.mark.parametrize("rel", [".", "audit", "runs", "runs/r1", ".secure-trainer",
                                 "registry.sqlite", "datasets", "models"])
def test_grants_refuse_anything_but_models_and_datasets_contents(root: Path, rel: str) -> None:
    """A subset `image_dir = "."` (or audit/, runs/, the key dir, a whole top folder) is refused."""
    from entrypoint.errors import ConfigError

    for d in ("audit", "runs/r1", ".secure-trainer", "datasets", "models"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "registry.sqlite").write_bytes(b"db")
    with pytest.raises(ConfigError):
        grant_group_read([root / rel], root=root, gid=GID)
    if (root / rel).is_dir():  # a listing is only ever granted on a directory
        with pytest.raises(ConfigError):
            grant_group_read([], root=root, gid=GID, listable=[root / rel])
    assert stat.S_IMODE(root.stat().st_mode) == 0o711
    assert [p for p in root.rglob("*") if p.lstat().st_gid == GID] == []


def test_a_symlink_in_a_dataset_is_not_followed(root: Path) -> None:
    """A link inside a granted dataset pointing at the registry grants nothing on its target."""
    data = root / "datasets" / "a" / "10_x"
    data.mkdir(parents=True)
    (data / "img.png").write_bytes(b"img")
    (root / "registry.sqlite").write_bytes(b"db")
    (root / "registry.sqlite").chmod(0o600)
    (data / "evil.png").symlink_to(root / "registry.sqlite")
    _owner_only(root / "datasets")
    grant_group_read([data], root=root, gid=GID)
    st = (root / "registry.sqlite").stat()
    assert st.st_gid != GID and stat.S_IMODE(st.st_mode) == 0o600
    assert not _readable_by_trainer(data / "evil.png")
