"""The gocryptfs-encrypted workspace: init, mount, unmount, passphrase change, layout.

`Gocryptfs` is the thin client of the Debian `gocryptfs` binary; `Workspace` adds the layout
(datasets/ models/ runs/ audit/ tmp/ registry.sqlite) and the open/close rules.
SECURITY: the passphrase reaches gocryptfs only through a stdin pipe — never argv, env or a file
(-passfile/-extpass are not used); the stdin buffer is a bytearray wiped after use. Error messages
never name the cipher dir, the mountpoint or anything inside them.

Two mount modes. The default (`workspace open`) lets gocryptfs daemonize, so the mount outlives
the command. The *tied* mode (`run`) keeps gocryptfs in the foreground (`-fg`) as a child of the
supervisor, in its own session (a terminal's Ctrl-C must not unmount under the teardown), with
PR_SET_PDEATHSIG=SIGTERM: if the supervisor dies, even by SIGKILL, gocryptfs gets SIGTERM and
unmounts — lazily (`fusermount -u -z`) when a process still holds the mount busy — and exits, so
no plaintext view outlives the supervisor.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from entrypoint import proc
from entrypoint.errors import WorkspaceError
from entrypoint.secret import Secret
from entrypoint.workspace.mounts import fuse_daemon_pid, is_fuse_mounted
from entrypoint.workspace.tether import ParentDeathSignal

__all__ = [
    "DEFAULT_STATE_DIR",
    "LAYOUT",
    "LAYOUT_DIRS",
    "Gocryptfs",
    "Workspace",
    "WorkspaceStatus",
    "state_dir",
]

GOCRYPTFS_CONF = "gocryptfs.conf"  # coupling: keys.py GOCRYPTFS_CONF
FSTYPE = "fuse.gocryptfs"
LAYOUT = ("datasets", "models", "runs", "audit", "tmp")
LAYOUT_DIRS = LAYOUT  # alias
DEFAULT_STATE_DIR = Path("/run/secure-trainer")
STATE_DIR_ENV = "ST_STATE_DIR"

# gocryptfs exit codes (gocryptfs/internal/exitcodes): the ones we turn into a specific message.
_EXIT_CIPHERDIR = 6
_EXIT_MOUNTPOINT = 10
_EXIT_PASSWORD = 12
_EXIT_LOADCONF = 23
_NOT_INITIALISED = "the cipher dir is not initialised (run `secure-trainer keys init`)"
_POLL_S = 0.02  # how often a tied mount is checked for being live
_REAP_S = 5.0  # how long an unmounted foreground gocryptfs gets to exit


def _mount_error(rc: int) -> WorkspaceError:
    """The one-line error for a failed gocryptfs mount with exit status `rc`."""
    if rc == _EXIT_PASSWORD:
        return WorkspaceError("wrong passphrase for the workspace")
    if rc in (_EXIT_CIPHERDIR, _EXIT_LOADCONF):
        return WorkspaceError("the cipher dir is not a valid gocryptfs dir")
    if rc == _EXIT_MOUNTPOINT:
        return WorkspaceError("the mountpoint is not usable (not empty or not a directory)")
    return WorkspaceError(f"gocryptfs mount failed (exit {rc})")


def state_dir(env: dict[str, str] | None = None) -> Path:
    """The root-only runtime dir (run marker, scratch mountpoints).

    $ST_STATE_DIR, else /run/secure-trainer.
    """
    value = (env if env is not None else os.environ).get(STATE_DIR_ENV)
    return Path(value) if value else DEFAULT_STATE_DIR


def _stdin_lines(*secrets: Secret) -> bytearray:
    """One line per secret, as gocryptfs reads them from a non-tty stdin; the caller wipes it."""
    buf = bytearray()
    for secret in secrets:
        raw = secret.reveal()
        if not raw:
            raise WorkspaceError("the workspace passphrase is empty")
        if b"\n" in raw or b"\r" in raw:
            raise WorkspaceError("the workspace passphrase must not contain a line break")
        buf += raw
        buf += b"\n"
    return buf


def _wipe(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))
    buf.clear()


def _is_empty_dir(path: Path) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except FileNotFoundError:
        return True
    except OSError:
        raise WorkspaceError("the mountpoint cannot be read (stale mount? run "
                             "`secure-trainer workspace close`)") from None


class Gocryptfs:
    """Client of the gocryptfs binary. Every method raises WorkspaceError on failure."""

    def __init__(self, binary: str = "gocryptfs", *, fusermount: str = "fusermount3",
                 umount: str = "umount", timeout: float = 60.0,
                 scratch_dir: Path | None = None) -> None:
        self.binary = binary
        self.fusermount = fusermount
        self.umount = umount
        self.timeout = timeout
        self._scratch_dir = scratch_dir
        # Foreground gocryptfs children of tied mounts, by mountpoint (reaped at unmount).
        self._tied: dict[str, subprocess.Popen[bytes]] = {}

    def _run(self, argv: list[str], stdin: bytearray | None, what: str,
             check: bool = False) -> int:
        return proc.run(argv, stdin=stdin, timeout=self.timeout, error=WorkspaceError,
                        what=what, check=check).returncode

    def init_cipher(self, cipher_dir: Path, passphrase: Secret) -> None:
        """Create a new gocryptfs cipher dir (made 0700 if missing; must be empty).

        Raises WorkspaceError if the dir is not empty or gocryptfs fails.
        """
        cipher_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _is_empty_dir(cipher_dir):
            raise WorkspaceError("the cipher dir is not empty (already initialised?)")
        buf = _stdin_lines(passphrase)
        try:
            # SECURITY: gocryptfs reads one password line from a non-tty stdin for -init.
            rc = self._run([self.binary, "-init", "-q", "--", str(cipher_dir)], buf,
                           "gocryptfs init", check=True)
        finally:
            _wipe(buf)
        del rc

    def mount(self, cipher_dir: Path, mountpoint: Path, passphrase: Secret, *,
              allow_other: bool = True, read_only: bool = False, noexec: bool = True,
              tied: bool = False) -> None:
        """Mount `cipher_dir` on `mountpoint` (must exist, be empty and not mounted).

        gocryptfs daemonizes after the mount is live; this returns when it is. With `tied` it
        stays a foreground child of this process instead and unmounts when this process (more
        exactly: the calling thread) dies; this returns once the mount is live. `allow_other`
        lets the unprivileged training user reach a root-made mount (kernel default_permissions
        then apply); `noexec` keeps binaries in the workspace from running.
        Raises WorkspaceError: wrong passphrase, not a cipher dir, mountpoint busy, gocryptfs error.
        """
        if not (cipher_dir / GOCRYPTFS_CONF).is_file():
            raise WorkspaceError(_NOT_INITIALISED)
        if not mountpoint.is_dir():
            raise WorkspaceError("the mountpoint does not exist or is not a directory")
        if self.is_mounted(mountpoint):
            raise WorkspaceError("the workspace is already mounted")
        if not _is_empty_dir(mountpoint):
            raise WorkspaceError("the mountpoint is not empty; refusing to mount over files")
        if not Path("/dev/fuse").exists():
            raise WorkspaceError("/dev/fuse is missing: run the container with --device /dev/fuse "
                                 "(natively: modprobe fuse)")
        argv = [self.binary, "-q", *(["-fg"] if tied else [])]
        if allow_other:
            argv.append("-allow_other")
        if read_only:
            argv.append("-ro")
        if noexec:
            argv.append("-noexec")
        argv += ["--", str(cipher_dir), str(mountpoint)]
        buf = _stdin_lines(passphrase)
        try:
            if tied:
                self._mount_tied(argv, buf, mountpoint)
                return
            rc = self._run(argv, buf, "gocryptfs mount")
        finally:
            _wipe(buf)
        if rc != 0:
            raise _mount_error(rc)

    def _mount_tied(self, argv: list[str], buf: bytearray, mountpoint: Path) -> None:
        """Start foreground gocryptfs tied to us, feed `buf` on stdin, wait until mounted."""
        tether = ParentDeathSignal(signal.SIGTERM)  # prepared before the fork (no dlopen after)
        try:
            # SECURITY: argv list, minimal env, the passphrase only on the stdin pipe; stdout and
            # stderr are dropped (gocryptfs logs there in -fg mode and may name paths).
            child = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=proc.minimal_env(), close_fds=True,
                start_new_session=True, preexec_fn=tether.apply,  # noqa: PLW1509
                bufsize=0)
        except FileNotFoundError:
            raise WorkspaceError("gocryptfs mount failed: the program is not installed") from None
        except OSError as exc:
            raise WorkspaceError(f"gocryptfs mount failed: could not start ({exc.strerror})") \
                from None
        assert child.stdin is not None
        try:
            child.stdin.write(buf)  # unbuffered: no copy of the passphrase in a Python buffer
            child.stdin.close()
        except OSError:
            pass  # gocryptfs exited early; its exit status says why
        deadline = time.monotonic() + self.timeout
        while not self.is_mounted(mountpoint):
            rc = child.poll()
            if rc is not None:
                raise _mount_error(rc)
            if time.monotonic() > deadline:
                child.kill()
                child.wait()
                raise WorkspaceError(f"gocryptfs mount failed: timed out after {self.timeout:g}s")
            time.sleep(_POLL_S)
        self._tied[os.path.realpath(mountpoint)] = child

    def _reap(self, mountpoint: Path) -> None:
        """Wait briefly for a tied mount's gocryptfs to exit after its unmount."""
        child = self._tied.pop(os.path.realpath(mountpoint), None)
        if child is None:
            return
        try:
            child.wait(timeout=_REAP_S)
        except subprocess.TimeoutExpired:
            pass  # a lazy unmount: it serves open files until they close, then exits

    def unmount(self, mountpoint: Path, *, lazy: bool = False) -> None:
        """Unmount the gocryptfs mount at `mountpoint`; a no-op when nothing is mounted there.

        Tries `fusermount3 -u`, then `umount` (root). Raises WorkspaceError if it stays mounted
        (busy: a process still has files open).
        """
        if not self.is_mounted(mountpoint):
            self._reap(mountpoint)
            return
        flag = "-uz" if lazy else "-u"
        attempts = [[self.fusermount, flag, "--", str(mountpoint)]]
        if os.geteuid() == 0:
            attempts.append([self.umount, *(["-l"] if lazy else []), "--", str(mountpoint)])
        for argv in attempts:
            try:
                if self._run(argv, None, "unmount") == 0 and not self.is_mounted(mountpoint):
                    self._reap(mountpoint)
                    return
            except WorkspaceError:
                continue  # the next tool may exist where this one does not
        raise WorkspaceError("could not unmount the workspace (busy? close programs using it)")

    def is_mounted(self, mountpoint: Path) -> bool:
        """True when /proc/self/mountinfo lists a fuse.gocryptfs mount at `mountpoint`."""
        return is_fuse_mounted(mountpoint, FSTYPE)

    def daemon_pid(self, mountpoint: Path) -> int | None:
        """PID of the gocryptfs process serving `mountpoint`, or None."""
        return fuse_daemon_pid(mountpoint, Path(self.binary).name)

    def change_passphrase(self, cipher_dir: Path, old: Secret, new: Secret) -> None:
        """Re-wrap the master key from `old` to `new` (`gocryptfs -passwd`; old then new on stdin).

        gocryptfs rewrites gocryptfs.conf atomically (temp file + rename), so a crash leaves either
        the old or the new wrapping. Raises WorkspaceError (wrong old passphrase, gocryptfs error).
        """
        if not (cipher_dir / GOCRYPTFS_CONF).is_file():
            raise WorkspaceError(_NOT_INITIALISED)
        buf = _stdin_lines(old, new)
        try:
            rc = self._run([self.binary, "-passwd", "-q", "--", str(cipher_dir)], buf,
                           "gocryptfs passwd")
        finally:
            _wipe(buf)
        if rc == _EXIT_PASSWORD:
            raise WorkspaceError("the current workspace passphrase is wrong")
        if rc != 0:
            raise WorkspaceError(f"gocryptfs passwd failed (exit {rc})")

    def verify_passphrase(self, cipher_dir: Path, passphrase: Secret) -> bool:
        """True when `passphrase` opens `cipher_dir`, proven by a read-only test mount into a
        private scratch dir that is unmounted and removed again. False on a wrong passphrase.

        Raises WorkspaceError for any other failure (not a cipher dir, FUSE unavailable).
        """
        scratch = Path(tempfile.mkdtemp(prefix="st-verify-", dir=self._scratch_parent()))
        try:
            try:
                self.mount(cipher_dir, scratch, passphrase, allow_other=False, read_only=True)
            except WorkspaceError as err:
                if err.message == "wrong passphrase for the workspace":
                    return False
                raise
            self.unmount(scratch)
            return True
        finally:
            if self.is_mounted(scratch):
                self.unmount(scratch, lazy=True)
            scratch.rmdir()

    def _scratch_parent(self) -> str | None:
        if self._scratch_dir is not None:
            self._scratch_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            return str(self._scratch_dir)
        parent = state_dir()
        try:
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return None  # not root: the default temp dir; only an empty mountpoint lives there
        return str(parent) if os.access(parent, os.W_OK) else None


@dataclass(frozen=True)
class WorkspaceStatus:
    """What `workspace status` reports; no paths."""

    initialised: bool
    """The cipher dir holds a gocryptfs config."""
    mounted: bool
    """A gocryptfs mount is live at the mountpoint."""
    daemon_pid: int | None
    """The gocryptfs process serving the mount."""
    layout_ok: bool
    """Every layout dir exists (only meaningful when mounted)."""


class Workspace:
    """The encrypted workspace: a cipher dir and its mountpoint with a fixed layout."""

    def __init__(self, gocryptfs: Gocryptfs, cipher_dir: Path, mountpoint: Path) -> None:
        self.gocryptfs = gocryptfs
        self.cipher_dir = cipher_dir
        self.mountpoint = mountpoint

    @property
    def datasets_dir(self) -> Path:
        """Imported (sanitized) datasets."""
        return self.mountpoint / "datasets"

    @property
    def models_dir(self) -> Path:
        """Base models."""
        return self.mountpoint / "models"

    @property
    def runs_dir(self) -> Path:
        """One `runs/<run-id>/` per run: LoRA, state, tensorboard, manifest."""
        return self.mountpoint / "runs"

    @property
    def audit_dir(self) -> Path:
        """The app audit log (root only)."""
        return self.mountpoint / "audit"

    @property
    def tmp_dir(self) -> Path:
        """Run scratch space that must stay encrypted (wiped at the end of a run)."""
        return self.mountpoint / "tmp"

    @property
    def registry_path(self) -> Path:
        """The LoRA registry database."""
        return self.mountpoint / "registry.sqlite"

    @property
    def initialised(self) -> bool:
        """True when the cipher dir holds a gocryptfs config."""
        return (self.cipher_dir / GOCRYPTFS_CONF).is_file()

    def create(self, passphrase: Secret) -> None:
        """Initialise the cipher dir (call `open` next). Raises WorkspaceError if it exists."""
        if self.initialised:
            raise WorkspaceError("the workspace is already initialised")
        self.gocryptfs.init_cipher(self.cipher_dir, passphrase)

    def open(self, passphrase: Secret, *, allow_other: bool = True,
             owner: tuple[int, int] | None = None, tied: bool = False) -> None:
        """Mount the workspace and create the layout on first open.

        Refuses an already-mounted or non-empty mountpoint. With `owner` (uid, gid of the
        training user) `runs/` and `tmp/` become writable by that user; `audit/` stays root-only.
        With `tied` the mount lives only as long as this process (see `Gocryptfs.mount`); call
        it from the main thread.
        Raises WorkspaceError; on a layout failure the mount is undone.
        """
        if self.gocryptfs.is_mounted(self.mountpoint):
            raise WorkspaceError("the workspace is already mounted")
        self.mountpoint.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.gocryptfs.mount(self.cipher_dir, self.mountpoint, passphrase,
                             allow_other=allow_other, tied=tied)
        try:
            self._ensure_layout(owner)
        except OSError as exc:
            self.gocryptfs.unmount(self.mountpoint, lazy=True)
            raise WorkspaceError(
                f"could not create the workspace layout ({exc.strerror})") from None

    def _ensure_layout(self, owner: tuple[int, int] | None) -> None:
        # coupling: the mount root IS the cipher dir (policy fs.cipher_dir_private)
        self.mountpoint.chmod(0o711)
        for name in LAYOUT:
            path = self.mountpoint / name
            path.mkdir(mode=0o700 if name in ("audit", "tmp") else 0o755, exist_ok=True)
        self.audit_dir.chmod(0o700)
        if owner is not None:
            # The training user writes its run dir and scratch space, reads datasets/models,
            # and can never touch audit/ or registry.sqlite.
            uid, gid = owner
            for path in (self.runs_dir, self.tmp_dir):
                os.chown(path, uid, gid)
                path.chmod(0o700 if path == self.tmp_dir else 0o755)

    def make_run_dir(self, run_id: str, owner: tuple[int, int] | None = None) -> Path:
        """Create `runs/<run_id>/` (owned by `owner` if given). Raises WorkspaceError."""
        if not run_id or len(run_id) > 64 or not all(c.isalnum() or c in "._-" for c in run_id) \
                or run_id.startswith("."):
            raise WorkspaceError("invalid run id (letters, digits, '.', '_', '-'; max 64)")
        if not self.gocryptfs.is_mounted(self.mountpoint):
            raise WorkspaceError("the workspace is not mounted")
        path = self.runs_dir / run_id
        try:
            path.mkdir(mode=0o750, exist_ok=False)
            if owner is not None:
                os.chown(path, *owner)
        except FileExistsError:
            raise WorkspaceError("a run with this id already exists") from None
        except OSError as exc:
            raise WorkspaceError(f"could not create the run dir ({exc.strerror})") from None
        return path

    def clear_tmp(self) -> None:
        """Remove everything under `tmp/` (it is encrypted at rest; plain removal suffices)."""
        if not self.gocryptfs.is_mounted(self.mountpoint) or not self.tmp_dir.is_dir():
            return
        for entry in list(self.tmp_dir.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def close(self) -> None:
        """Unmount the workspace; a no-op when it is not mounted. Raises WorkspaceError if busy."""
        self.gocryptfs.unmount(self.mountpoint)

    def status(self) -> WorkspaceStatus:
        """Initialised / mounted / daemon pid / layout, read without any passphrase."""
        mounted = self.gocryptfs.is_mounted(self.mountpoint)
        try:
            layout_ok = mounted and all((self.mountpoint / d).is_dir() for d in LAYOUT)
        except OSError:
            layout_ok = False  # ENOTCONN: the daemon died and left a dead mount behind
        return WorkspaceStatus(initialised=self.initialised, mounted=mounted,
                               daemon_pid=self.gocryptfs.daemon_pid(self.mountpoint) if mounted
                               else None, layout_ok=layout_ok)
