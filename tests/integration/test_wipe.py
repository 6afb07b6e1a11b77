"""Wipe counts, overwrite-before-unlink, symlinks and other filesystems left alone.

All targets live under tmp_path: the real /tmp of this machine is shared and never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.run.wipe import default_targets, in_container, wipe
from entrypoint.secret import Secret
from entrypoint.workspace.gocryptfs import Gocryptfs

pytestmark = [pytest.mark.integration]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """tmp_path/target with 3 files (10+20+30 bytes), 2 dirs, a symlink out, a hard link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("must survive")
    target = tmp_path / "target"
    (target / "a" / "b").mkdir(parents=True)
    (target / "f1").write_bytes(b"1" * 10)
    (target / "a" / "f2").write_bytes(b"2" * 20)
    (target / "a" / "b" / "f3").write_bytes(b"3" * 30)
    (target / "link-out").symlink_to(outside)
    os.link(outside / "keep.txt", target / "hard")
    return target


def test_dry_run_counts_without_deleting(tree: Path) -> None:
    report = wipe([tree], dry_run=True)
    assert (report.files, report.dirs) == (5, 2)  # 3 files + symlink + hard link
    assert report.bytes == 60 + len("must survive")
    assert (tree / "a" / "b" / "f3").exists()


def test_wipe_removes_contents_keeps_root_and_outside(tree: Path, tmp_path: Path) -> None:
    report = wipe([tree, tmp_path / "missing"])
    assert (report.files, report.dirs, report.failed) == (5, 2, 0)
    assert report.overwritten == 3 and report.bytes == 60 + len("must survive")
    assert tree.is_dir() and not any(tree.iterdir())
    # neither the symlink's target nor the hard-linked file's data was touched
    assert (tmp_path / "outside" / "keep.txt").read_text() == "must survive"


def test_overwrite_zeroes_before_unlink(tmp_path: Path) -> None:
    f = tmp_path / "t" / "secret.bin"
    f.parent.mkdir()
    f.write_bytes(b"canary" * 100)
    fd = os.open(f, os.O_RDONLY)  # keep the inode alive to look at it after the unlink
    try:
        wipe([f.parent])
        assert not f.exists()
        assert os.pread(fd, 600, 0) == bytes(600)
    finally:
        os.close(fd)


def test_refuses_system_dirs_and_relative() -> None:
    for bad in (Path("/"), Path("/usr"), Path("/tmp/../etc"), Path("rel")):
        with pytest.raises(ConfigError):
            wipe([bad])


def test_default_targets_outside_container_never_host_tmp(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"TMPDIR": str(state / "tmp" / "x"), "HF_HOME": "/root/.cache/huggingface",
           "HOME": "/root"}
    outside = default_targets(env, state_dir=state, container=False)
    assert Path("/tmp") not in outside and Path("/root/.cache/huggingface") not in outside
    assert state / "tmp" in outside and Path(env["TMPDIR"]) in outside
    # /.dockerenv exists on shared sandboxes too: only the image's explicit flag counts
    assert not in_container({}) and in_container({"ST_IN_CONTAINER": "1"})
    assert Path("/tmp") not in default_targets(env, state_dir=state)
    inside = default_targets(env, state_dir=state, container=True)
    assert Path("/tmp") in inside and Path("/var/tmp") in inside
    assert Path("/root/.cache/huggingface") in inside


@pytest.mark.root
def test_wipe_does_not_enter_a_mounted_workspace(tmp_path: Path) -> None:
    fs = Gocryptfs(scratch_dir=tmp_path / "scratch")
    target = tmp_path / "target"
    mnt = target / "mnt"
    mnt.mkdir(parents=True)
    key = Secret.generate()
    fs.init_cipher(tmp_path / "cipher", key)
    fs.mount(tmp_path / "cipher", mnt, key, allow_other=False)
    try:
        (mnt / "inside").write_text("encrypted data")
        (target / "loose").write_text("x")
        report = wipe([target])
        assert report.skipped_mounts == 1 and report.files == 1
        assert (mnt / "inside").read_text() == "encrypted data"
    finally:
        fs.unmount(mnt, lazy=True)


def test_cli_prints_counts_only(tree: Path) -> None:
    cmd = [sys.executable, "-m", "entrypoint.cli", "wipe", "--path", str(tree)]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "wiped 5 files, 2 dirs, 72 bytes" in out.stdout
    assert str(tree) not in out.stdout + out.stderr and "f1" not in out.stdout
    assert not any(tree.iterdir())
