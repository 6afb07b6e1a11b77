"""Real gocryptfs: round trip, no plaintext at rest, key never in argv/environ, refusals, rekey."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.errors import WorkspaceError
from entrypoint.secret import Secret
from entrypoint.workspace.gocryptfs import LAYOUT, Gocryptfs, Workspace

pytestmark = [pytest.mark.integration, pytest.mark.root]
CANARY = b"canary-plaintext-7f3e9a"


def _proc_blobs() -> list[bytes]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for name in ("cmdline", "environ"):
                try:
                    out.append(Path(f"/proc/{pid}/{name}").read_bytes())
                except OSError:
                    pass  # exited meanwhile
    return out


@pytest.fixture()
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh workspace in tmp_path; always unmounted at the end."""
    fs = Gocryptfs(scratch_dir=tmp_path / "scratch")
    workspace = Workspace(fs, tmp_path / "cipher", tmp_path / "mnt")
    try:
        yield workspace
    finally:
        fs.unmount(workspace.mountpoint, lazy=True)


def test_round_trip_no_plaintext_key_not_in_argv_or_environ(ws: Workspace) -> None:
    key = Secret.generate()
    seen: list[bytes] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.extend(_proc_blobs())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ws.create(key)
        ws.open(key)
        status = ws.status()
        assert status.mounted and status.layout_ok and status.daemon_pid
        assert sorted(p.name for p in ws.mountpoint.iterdir()) == sorted(LAYOUT)
        daemon = Path(f"/proc/{status.daemon_pid}")
        assert bytes(key.reveal()) not in (daemon / "cmdline").read_bytes()
        assert bytes(key.reveal()) not in (daemon / "environ").read_bytes()
        (ws.datasets_dir / "secret-name.txt").write_bytes(CANARY * 100)
    finally:
        stop.set()
        watcher.join()
        ws.close()
    assert not ws.status().mounted and ws.status().initialised
    assert not any(ws.mountpoint.iterdir())  # nothing left in plaintext at the mountpoint
    raw = b"".join(p.read_bytes() for p in ws.cipher_dir.rglob("*") if p.is_file())
    names = " ".join(p.name for p in ws.cipher_dir.rglob("*"))
    assert CANARY not in raw and "secret-name" not in names
    assert seen and not any(bytes(key.reveal()) in blob for blob in seen)
    ws.open(key)
    assert (ws.datasets_dir / "secret-name.txt").read_bytes() == CANARY * 100
    ws.close()


def test_wrong_key_nonempty_and_already_mounted_refused(ws: Workspace, tmp_path: Path) -> None:
    key = Secret.generate()
    ws.create(key)
    with pytest.raises(WorkspaceError) as err:
        ws.open(Secret.generate())
    assert err.value.exit_code == 5 and "wrong passphrase" in err.value.message
    assert str(tmp_path) not in err.value.message
    (ws.mountpoint / "stray").write_text("x")
    with pytest.raises(WorkspaceError, match="not empty") as err2:
        ws.open(key)
    assert err2.value.exit_code == 5 and str(tmp_path) not in err2.value.message
    (ws.mountpoint / "stray").unlink()
    ws.open(key)
    with pytest.raises(WorkspaceError, match="already mounted"):
        ws.open(key)
    ws.close()
    ws.close()  # idempotent


def test_change_passphrase_old_fails_new_works(tmp_path: Path) -> None:
    fs = Gocryptfs(scratch_dir=tmp_path / "scratch")
    cipher = tmp_path / "cipher"
    old, new = Secret.generate(), Secret.generate()
    fs.init_cipher(cipher, old)
    with pytest.raises(WorkspaceError, match="current workspace passphrase is wrong"):
        fs.change_passphrase(cipher, new, old)
    fs.change_passphrase(cipher, old, new)
    assert fs.verify_passphrase(cipher, new)
    assert not fs.verify_passphrase(cipher, old)
    assert not any((tmp_path / "scratch").iterdir())  # test mounts cleaned up
    assert len(old) == 64 and len(new) == 64  # callers' secrets are not consumed


def test_owner_gets_runs_and_tmp_but_not_audit(ws: Workspace) -> None:
    key = Secret.generate()
    ws.create(key)
    ws.open(key, owner=(10001, 10001))
    try:
        assert ws.runs_dir.stat().st_uid == 10001 and ws.tmp_dir.stat().st_uid == 10001
        assert ws.audit_dir.stat().st_uid == 0 and ws.audit_dir.stat().st_mode & 0o077 == 0
        run = ws.make_run_dir("r-1", owner=(10001, 10001))
        assert run.stat().st_uid == 10001
        with pytest.raises(WorkspaceError, match="invalid run id"):
            ws.make_run_dir("../x")
    finally:
        ws.close()


def test_not_initialised_and_bad_passphrase_text(tmp_path: Path) -> None:
    fs = Gocryptfs()
    (tmp_path / "mnt").mkdir()
    with pytest.raises(WorkspaceError, match="not initialised"):
        fs.mount(tmp_path / "cipher", tmp_path / "mnt", Secret.generate())
    with pytest.raises(WorkspaceError, match="line break"):
        fs.init_cipher(tmp_path / "cipher", Secret("two\nlines"))


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "HOME": "/root", **env}
    return subprocess.run([sys.executable, "-m", "entrypoint.cli", *args], env=full,
                          check=False, capture_output=True, text=True, timeout=180)


def test_cli_open_status_close_and_audit_verify_with_vault(dev_vault: Any, tmp_path: Path) -> None:
    from entrypoint.audit.applog import AppAuditLog
    from entrypoint.vault.client import VaultClient
    from entrypoint.vault.settings import VaultSettings

    path = f"secure-trainer/ws-{uuid.uuid4().hex[:8]}"
    env = dev_vault.add_workspace_role(f"role-{uuid.uuid4().hex[:8]}", tmp_path / "creds",
                                       key_path=path, audit_key_path=path + "-audit")
    env |= {"ST_CIPHER_DIR": str(tmp_path / "cipher"), "ST_MOUNTPOINT": str(tmp_path / "mnt")}
    try:
        assert _cli(["keys", "init"], env).returncode == 0
        opened = _cli(["workspace", "open"], env)
        assert opened.returncode == 0, opened.stderr
        status = json.loads(_cli(["workspace", "status", "--json"], env).stdout)
        assert status["mounted"] and status["layout_ok"] and status["initialised"]
        again = _cli(["workspace", "open"], env)
        assert again.returncode == 5 and "already mounted" in again.stderr
        assert str(tmp_path) not in again.stderr
        with VaultClient.from_settings(VaultSettings.from_env(env)) as vault:
            vault.login()
            key = vault.audit_key(create=True)
        log = AppAuditLog(tmp_path / "mnt" / "audit" / "app.jsonl", key)
        log.append("workspace_mounted")
        log.append("teardown", ok=True)
        verified = _cli(["audit", "verify"], env)
        assert verified.returncode == 0 and "ok: 2 records" in verified.stdout, verified.stderr
    finally:
        closed = _cli(["workspace", "close"], env)
        Gocryptfs().unmount(tmp_path / "mnt", lazy=True)
    assert closed.returncode == 0
    status = json.loads(_cli(["workspace", "status", "--json"], env).stdout)
    assert not status["mounted"] and status["initialised"]


def test_killed_daemon_leaves_a_mount_that_close_removes(ws: Workspace) -> None:
    key = Secret.generate()
    ws.create(key)
    ws.open(key)
    pid = ws.status().daemon_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # our own gocryptfs child: what a SIGKILLed run leaves behind
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    dead = ws.status()
    assert dead.mounted and not dead.layout_ok  # the dead mount is still in the table ...
    with pytest.raises(WorkspaceError):
        ws.open(key)  # ... so a new open refuses it
    ws.close()
    assert not ws.status().mounted
    ws.open(key)  # and after recovery the workspace opens again
    ws.close()
