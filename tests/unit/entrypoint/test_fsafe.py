"""fsafe: directory-fd, O_NOFOLLOW operations refuse links and swapped entries (real files)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from entrypoint.errors import WorkspaceError
from entrypoint.fsafe import (
    create_at,
    open_beneath,
    open_dir,
    open_regular,
    set_owner_mode,
    sha256_at,
    walk,
)


def test_open_dir_and_beneath_refuse_links(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    root = open_dir(tmp_path)
    try:
        fd = open_beneath(root, "a/b")
        os.close(fd)
        for bad in ("link", "link/b", "../x", "a/../a"):
            with pytest.raises(WorkspaceError):
                os.close(open_beneath(root, bad))
        with pytest.raises(WorkspaceError):
            open_beneath(root, "/etc")
    finally:
        os.close(root)


def test_regular_files_only_and_hash(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    (tmp_path / "l").symlink_to(tmp_path / "f")
    os.mkfifo(tmp_path / "p")
    fd = open_dir(tmp_path)
    try:
        assert sha256_at(fd, "f") == hashlib.sha256(b"data").hexdigest()
        for bad in ("l", "p", "missing", "..", "a/b"):
            with pytest.raises(WorkspaceError):
                os.close(open_regular(fd, bad))
    finally:
        os.close(fd)


def test_create_never_overwrites_nor_follows(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    (tmp_path / "manifest.json").symlink_to(target)
    fd = open_dir(tmp_path)
    try:
        with pytest.raises(WorkspaceError):
            create_at(fd, "manifest.json", b"evil")
        create_at(fd, "new.json", b"{}", mode=0o600)
    finally:
        os.close(fd)
    assert target.read_bytes() == b"keep"
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600


def test_walk_and_set_owner_mode_never_follow(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"x")
    outside.chmod(0o644)
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_bytes(b"y")
    (tree / "ln").symlink_to(outside)
    (tree / "dl").symlink_to(tmp_path)
    fd = open_dir(tree)
    try:
        seen = []
        for e in walk(fd):
            seen.append(e.name)
            set_owner_mode(e.parent_fd, e.name, e.st, uid=0, gid=0, mode=0o400)
    finally:
        os.close(fd)
    assert seen == ["f", "d", "dl", "ln"]  # children first, links not descended
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert stat.S_IMODE((tree / "d" / "f").stat().st_mode) == 0o400


def test_set_owner_mode_detects_a_swap(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"y")
    st = os.lstat(tmp_path / "f")
    (tmp_path / "g").write_bytes(b"other inode")  # allocated while f lives: another inode
    (tmp_path / "g").replace(tmp_path / "f")
    fd = open_dir(tmp_path)
    try:
        with pytest.raises(WorkspaceError):
            set_owner_mode(fd, "f", st, mode=0o400)
    finally:
        os.close(fd)
