"""`keys rekey` (crypto-shredding) against real OpenBao + gocryptfs: the live tree moves to a
fresh master key, a backup of the old cipher dir no longer opens with anything Vault still
holds, and a SIGKILL after every step leaves a workspace that opens with all its data; the
next rekey finishes the job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from entrypoint.audit.journal import JOURNAL_NAME
from entrypoint.errors import WorkspaceError
from entrypoint.secret import Secret
from entrypoint.vault.client import VaultClient
from entrypoint.vault.devserver import DevVault
from entrypoint.vault.settings import VaultSettings
from entrypoint.workspace.gocryptfs import Gocryptfs
from entrypoint.workspace.keys import REKEY_STEPS, KeyManager

pytestmark = [pytest.mark.integration, pytest.mark.root]
REPO = Path(__file__).resolve().parents[2]
FILES = {"canary.txt": b"opened with the right key\n", "datasets/d/3_x/a.png": b"\x89PNG" * 50,
         "runs/r1/lora.safetensors": os.urandom(4096)}


@dataclass
class Site:
    env: dict[str, str]
    cipher: Path
    mnt: Path
    vault: DevVault

    def live_values(self) -> list[str]:
        kv = self.vault.root_client().secrets.kv.v2
        path = self.env["ST_VAULT_KEY_PATH"]
        meta = kv.read_secret_metadata(path=path)["data"]["versions"]
        return [kv.read_secret_version(path=path, version=int(n), raise_on_deleted_version=True)
                ["data"]["data"]["passphrase"]
                for n, info in meta.items() if not info["destroyed"] and not info["deletion_time"]]


@pytest.fixture
def site(dev_vault: DevVault, tmp_path: Path) -> Site:
    path = f"secure-trainer/rk-{uuid.uuid4().hex[:8]}"
    env = dev_vault.add_workspace_role(f"role-{uuid.uuid4().hex[:8]}", tmp_path / "creds",
                                       key_path=path, audit_key_path=path + "-audit")
    (tmp_path / "mnt").mkdir()
    return Site(env, tmp_path / "cipher", tmp_path / "mnt", dev_vault)


@contextmanager
def mounted(site: Site) -> Iterator[Path]:
    with VaultClient.from_settings(VaultSettings.from_env(site.env)) as vault:
        vault.login()
        passphrase = KeyManager(vault, Gocryptfs(), site.cipher).open_passphrase()
    Gocryptfs().mount(site.cipher, site.mnt, passphrase, allow_other=False)
    try:
        yield site.mnt
    finally:
        Gocryptfs().unmount(site.mnt)


def cli(site: Site, *args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], **site.env, "ST_CIPHER_DIR": str(site.cipher),
           # the audit journal of rotate/rekey goes to the test's state dir, not the machine's
           "ST_STATE_DIR": str(site.cipher.parent / "state")}
    if crash:
        env["ST_TEST_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "entrypoint.cli", "keys", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=180, cwd=REPO)


def prepare(site: Site) -> None:
    assert cli(site, "init").returncode == 0
    with mounted(site) as root:
        for rel, data in FILES.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        (root / "runs" / "r1" / "lora.safetensors").chmod(0o640)
        os.chown(root / "runs" / "r1", 10001, 10001)
        (root / "link").symlink_to("canary.txt")


def assert_intact(site: Site) -> None:
    with mounted(site) as root:
        for rel, data in FILES.items():
            assert (root / rel).read_bytes() == data
        assert (root / "runs" / "r1" / "lora.safetensors").stat().st_mode & 0o777 == 0o640
        assert (root / "runs" / "r1").stat().st_uid == 10001
        assert os.readlink(root / "link") == "canary.txt"


def assert_clean(site: Site) -> None:
    siblings = [p.name for p in site.cipher.parent.iterdir() if ".rekey" in p.name]
    assert siblings == []
    with VaultClient.from_settings(VaultSettings.from_env(site.env)) as vault:
        vault.login()
        st = KeyManager(vault, Gocryptfs(), site.cipher).status()
    live = [v.version for v in st.versions if v.state not in ("destroyed", "deleted")]
    assert live == [st.active] and st.pending is None


def test_rekey_makes_an_old_backup_unopenable(site: Site, tmp_path: Path) -> None:
    prepare(site)
    backup = tmp_path / "backup-cipher"
    shutil.copytree(site.cipher, backup, symlinks=True)
    old_conf = (site.cipher / "gocryptfs.conf").read_bytes()
    proc = cli(site, "rekey")
    assert proc.returncode == 0, proc.stderr
    assert "version 1 destroyed, 2 active" in proc.stdout and "files=3" in proc.stdout
    assert_intact(site)
    assert_clean(site)
    assert (site.cipher / "gocryptfs.conf").read_bytes() != old_conf
    # The rekey is on record in the pre-mount journal (merged at the next run's mount).
    (entry,) = [json.loads(ln) for ln in (site.cipher.parent / "state" / JOURNAL_NAME)
                .read_text().splitlines()]
    assert entry["event"] == "rekey" and entry["fields"]["new_version"] == 2
    assert entry["fields"]["files"] == 3
    # Nothing Vault still holds opens the backup taken before the rekey.
    values = site.live_values()
    assert len(values) == 1
    target = tmp_path / "probe"
    target.mkdir()
    for value in values:
        with pytest.raises(WorkspaceError, match="wrong passphrase"):
            Gocryptfs().mount(backup, target, Secret(value), allow_other=False)
    for value in values:
        assert value not in proc.stdout + proc.stderr


def test_rekey_refuses_a_mounted_workspace(site: Site) -> None:
    prepare(site)
    with mounted(site):
        proc = cli(site, "rekey")
    assert proc.returncode == 5 and "close the workspace" in proc.stderr
    assert_intact(site)


@pytest.mark.parametrize("step", REKEY_STEPS)
def test_sigkill_at_every_rekey_step_loses_nothing(site: Site, step: str) -> None:
    prepare(site)
    proc = cli(site, "rekey", crash=step)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    assert_intact(site)  # opens (active, else pending) with every file, mode, owner, link
    proc = cli(site, "rekey")
    assert proc.returncode == 0, proc.stderr
    assert_intact(site)
    assert_clean(site)


def test_registry_erase_rekey_then_old_backup_holds_nothing_openable(
        site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`registry erase --subject S --yes --rekey` on an open workspace: S's file is gone, the
    workspace is open again under a new master key, a backup taken before no longer opens,
    and the audit log (erasure, rekey_started, rekey) verifies against its Vault anchor."""
    import io
    import json

    from entrypoint.cli import main
    from entrypoint.workspace.gocryptfs import Workspace
    from secure_trainer.registry import ImageRecord, Registry

    assert cli(site, "init").returncode == 0
    with VaultClient.from_settings(VaultSettings.from_env(site.env)) as vault:
        vault.login()
        passphrase = KeyManager(vault, Gocryptfs(), site.cipher).open_passphrase()
    ws = Workspace(Gocryptfs(), site.cipher, site.mnt)
    ws.open(passphrase, allow_other=False)
    try:
        images = {}
        for name, subject in (("s.png", "S-1"), ("t.png", "T-2")):
            path = site.mnt / "datasets" / "d" / "3_x" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(name.encode() * 100)
            images[name] = ImageRecord("d", str(path), hashlib_sha(path), subject)
        Registry(site.mnt / "registry.sqlite").record_images(images.values())
        backup = tmp_path / "backup"
        shutil.copytree(site.cipher, backup, symlinks=True)
        for name in [n for n in os.environ if n.startswith(("VAULT_", "ST_"))]:
            monkeypatch.delenv(name)
        for name, value in {**site.env, "ST_MOUNTPOINT": str(site.mnt),
                            "ST_CIPHER_DIR": str(site.cipher)}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
        code = main(["registry", "erase", "--subject", "S-1", "--yes", "--rekey"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "rekeyed: new master key" in out and "anchored in Vault" in out
        assert Gocryptfs().is_mounted(site.mnt)
        assert not (site.mnt / "datasets" / "d" / "3_x" / "s.png").exists()
        assert (site.mnt / "datasets" / "d" / "3_x" / "t.png").exists()
        code = main(["audit", "verify", "--anchored"])
        out, err = capsys.readouterr()
        assert code == 0, err
        events = [json.loads(line)["event"]
                  for line in (site.mnt / "audit" / "app.jsonl").read_text().splitlines()]
        assert events == ["erasure", "rekey_started", "rekey"]
    finally:
        ws.close()
    probe = tmp_path / "probe"
    probe.mkdir()
    for value in site.live_values():
        with pytest.raises(WorkspaceError, match="wrong passphrase"):
            Gocryptfs().mount(backup, probe, Secret(value), allow_other=False)


def hashlib_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
