"""`keys rekey`: crypto-shredding — the live tree moves into a fresh cipher dir with a new
gocryptfs master key, the two dirs are swapped atomically, and the old passphrase version is
destroyed in Vault, so a backup of the old cipher dir can no longer be opened.

Steps (each can be SIGKILLed; `REKEY_STEPS` names the points the test hook kills at):
new passphrase → Vault version (pending) → fresh cipher dir `<cipher>.rekey-new` → mount old
and new side by side, copy the tree, compare it → unmount → swap the two dirs with
renameat2(RENAME_EXCHANGE) → mark the new version active → destroy the old version → delete the
old tree. Until the swap the live dir opens with the active (old) version; from the swap on it
opens with the pending (new) one, and `KeyManager.open_passphrase()` tries both. The next
`rekey` settles an interrupted one (KeyManager's recovery keeps the version that opens the live
dir and destroys the other; leftover mounts and the spare dir are removed).
Must never: run while the workspace is mounted, destroy the old version before the new tree
was compared equal and swapped in, follow a symlink while copying, or print a passphrase.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from entrypoint.errors import WorkspaceError
from entrypoint.secret import Secret
from entrypoint.workspace.gocryptfs import Gocryptfs
from entrypoint.workspace.keys import REKEY_STEPS, KeyManager

__all__ = ["REKEY_STEPS", "RekeyResult", "Rekeyer", "cipher_in_use", "exchange"]

log = logging.getLogger(__name__)

_SPARE = ".rekey-new"
_MNT_OLD = ".rekey-mnt-old"
_MNT_NEW = ".rekey-mnt-new"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass(frozen=True)
class RekeyResult:
    """Versions before and after, and what was copied (counts only)."""

    old_version: int
    new_version: int
    files: int
    recovered: bool


def _sibling(cipher_dir: Path, suffix: str) -> Path:
    return cipher_dir.parent / (cipher_dir.name + suffix)


def cipher_in_use(cipher_dir: Path) -> bool:
    """True when a fuse.gocryptfs mount serves `cipher_dir` (per /proc/self/mountinfo)."""
    target = os.path.realpath(cipher_dir)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        raise WorkspaceError("the mount table could not be read") from None
    for line in lines:
        _, _, tail = line.partition(" - ")
        parts = tail.split()
        if len(parts) >= 2 and parts[0].startswith("fuse.gocryptfs") and \
                os.path.realpath(parts[1].replace("\\040", " ")) == target:
            return True
    return False


def exchange(a: Path, b: Path) -> None:
    """Swap two directory entries atomically (Linux renameat2 RENAME_EXCHANGE).

    Raises WorkspaceError when the kernel or filesystem cannot (no half-swapped state).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is None:
        raise WorkspaceError("atomic directory exchange is not available (renameat2)")
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        raise WorkspaceError(f"the atomic swap of the cipher dirs failed "
                             f"(errno {ctypes.get_errno()})")
    fd = os.open(a.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _snapshot(root: Path) -> list[tuple[str, str, int, int, int, str]]:
    """(name, type, mode, uid, gid, content hash or link target) of every entry below `root`."""
    out = []
    for top, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted([*names, *[d for d in dirs if os.path.islink(os.path.join(top, d))]]
                           ) + sorted(d for d in dirs if not os.path.islink(os.path.join(top, d))):
            full = Path(top) / name
            st = full.lstat()
            rel = full.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                kind, value = "link", os.readlink(full)
            elif stat.S_ISDIR(st.st_mode):
                kind, value = "dir", ""
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256()
                with open(full, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
                kind, value = "file", digest.hexdigest()
            else:
                raise WorkspaceError("the workspace holds a special file; rekey refuses it")
            out.append((rel, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, value))
    return sorted(out)


def _copy_tree(src: Path, dst: Path) -> int:
    """Copy every entry (links as links, modes, owners); returns the number of files."""
    files = 0
    for top, dirs, names in os.walk(src, followlinks=False):
        rel = Path(top).relative_to(src)
        for name in sorted(dirs + names):
            s, d = Path(top) / name, dst / rel / name
            st = s.lstat()
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISDIR(st.st_mode):
                d.mkdir(mode=0o700)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(s, d, follow_symlinks=False)
                files += 1
            else:
                raise WorkspaceError("the workspace holds a special file; rekey refuses it")
            os.lchown(d, st.st_uid, st.st_gid)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(d, stat.S_IMODE(st.st_mode))
        dirs[:] = [x for x in dirs if not os.path.islink(os.path.join(top, x))]
    root_st = src.stat()
    os.chown(dst, root_st.st_uid, root_st.st_gid)
    os.chmod(dst, stat.S_IMODE(root_st.st_mode))
    return files


class Rekeyer:
    """Runs the rekey state machine for one cipher dir (the workspace must be closed)."""

    def __init__(self, keys: KeyManager, fs: Gocryptfs, cipher_dir: Path, *,
                 unsafe_test_crash_at: str | None = None) -> None:
        self._keys = keys
        self._vault = keys.vault
        self._fs = fs
        self._cipher = cipher_dir
        self._crash_at = unsafe_test_crash_at

    def _crash(self, step: str) -> None:
        """TEST HOOK ONLY: SIGKILL ourselves after `step`."""
        if self._crash_at == step:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)

    def _cleanup_leftovers(self) -> bool:
        """Unmount and remove what an interrupted rekey left; True when there was any."""
        found = False
        for suffix in (_MNT_OLD, _MNT_NEW):
            mnt = _sibling(self._cipher, suffix)
            if self._fs.is_mounted(mnt):
                self._fs.unmount(mnt, lazy=True)
                found = True
            if mnt.exists():
                mnt.rmdir()
                found = True
        spare = _sibling(self._cipher, _SPARE)
        if spare.exists():
            shutil.rmtree(spare)  # the other key's tree: never the live dir
            found = True
        return found

    def rekey(self) -> RekeyResult:
        """Run every step; settle an interrupted rekey or rotation first.

        Raises WorkspaceError (mounted, copy mismatch, swap impossible) or VaultError.
        """
        leftovers = self._cleanup_leftovers()  # our own side mounts of a killed rekey first
        if cipher_in_use(self._cipher):
            raise WorkspaceError("close the workspace first: rekey needs it unmounted")
        state, settled = self._keys.settle()
        recovered = leftovers or settled
        if state.active is None:
            raise WorkspaceError("the workspace key has no active version (run `keys init`)")
        old, old_version = self._vault.read_passphrase(state.active)
        new = Secret.generate()
        spare = _sibling(self._cipher, _SPARE)
        mnt_old, mnt_new = _sibling(self._cipher, _MNT_OLD), _sibling(self._cipher, _MNT_NEW)
        try:
            new_version = self._vault.write_passphrase(new, cas=state.current_version)
            self._vault.set_key_custom_metadata({"active": str(old_version),
                                                 "pending": str(new_version)})
            self._crash("rekey_after_mark_pending")
            self._fs.init_cipher(spare, new)  # a fresh master key, wrapped by `new`
            self._crash("rekey_after_init")
            mnt_old.mkdir(mode=0o700)
            mnt_new.mkdir(mode=0o700)
            self._fs.mount(self._cipher, mnt_old, old, allow_other=False, read_only=True)
            try:
                self._fs.mount(spare, mnt_new, new, allow_other=False)
                try:
                    self._crash("rekey_after_mount")  # both mounts live: recovery unmounts
                    files = _copy_tree(mnt_old, mnt_new)
                    if _snapshot(mnt_old) != _snapshot(mnt_new):
                        raise WorkspaceError("the re-encrypted tree differs from the live one; "
                                             "nothing was swapped")
                finally:
                    self._fs.unmount(mnt_new)
            finally:
                self._fs.unmount(mnt_old)
            mnt_old.rmdir()
            mnt_new.rmdir()
            self._crash("rekey_after_copy")
            exchange(self._cipher, spare)  # the live path now holds the new master key's tree
            self._crash("rekey_after_swap")
        finally:
            old.wipe()
            new.wipe()
        self._vault.set_key_custom_metadata({"active": str(new_version)})
        self._crash("rekey_after_mark_active")
        self._vault.destroy_version(old_version)
        self._crash("rekey_after_destroy")
        shutil.rmtree(spare)  # the old tree; unreadable from now on anyway
        log.info("workspace rekeyed (version %d -> %d)", old_version, new_version)
        return RekeyResult(old_version, new_version, files, recovered)


def rekey_open_workspace(keys: KeyManager, fs: Gocryptfs, cipher_dir: Path, mountpoint: Path,
                         *, unsafe_test_crash_at: str | None = None) -> RekeyResult:
    """Close the mounted workspace, rekey it, and open it again with the new key.

    Raises WorkspaceError (busy mount, rekey failure; the workspace then stays closed and
    `keys rekey` settles it) or VaultError.
    """
    from entrypoint.workspace.gocryptfs import Workspace

    Workspace(fs, cipher_dir, mountpoint).close()
    result = Rekeyer(keys, fs, cipher_dir, unsafe_test_crash_at=unsafe_test_crash_at).rekey()
    passphrase = keys.open_passphrase()
    try:
        Workspace(fs, cipher_dir, mountpoint).open(passphrase)
    finally:
        passphrase.wipe()
    return result
