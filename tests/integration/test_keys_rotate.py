"""Key init/status/rotate against real OpenBao + real gocryptfs mounts, including SIGKILL of the
rotating process after every step (test hook ST_TEST_CRASH_AT): the workspace must still open
with what `KeyManager.open_passphrase()` returns, and the next rotation must complete."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from entrypoint.errors import VaultError, WorkspaceError
from entrypoint.secret import Secret
from entrypoint.vault.client import VaultClient
from entrypoint.vault.devserver import DevVault
from entrypoint.vault.settings import VaultSettings
from entrypoint.workspace.gocryptfs import Gocryptfs
from entrypoint.workspace.keys import ROTATE_STEPS, KeyManager

pytestmark = [pytest.mark.integration, pytest.mark.root]
REPO = Path(__file__).resolve().parents[2]
CANARY = b"workspace canary: opened with the right key\n"


@dataclass
class Site:
    """One workspace: its Vault env (own AppRole + key path) and its cipher dir."""

    env: dict[str, str]
    cipher_dir: Path
    mountpoint: Path
    dev_vault: DevVault

    def all_values(self) -> list[str]:
        """Every passphrase version still readable by root (for leak checks)."""
        kv = self.dev_vault.root_client().secrets.kv.v2
        path = self.env["ST_VAULT_KEY_PATH"]
        meta = kv.read_secret_metadata(path=path)["data"]["versions"]
        values = []
        for number, info in meta.items():
            if not info["destroyed"]:
                values.append(kv.read_secret_version(path=path, version=int(number),
                                                     raise_on_deleted_version=True)
                              ["data"]["data"]["passphrase"])
        return values


@pytest.fixture
def site(dev_vault: DevVault, tmp_path: Path) -> Site:
    path = f"secure-trainer/ws-{uuid.uuid4().hex[:8]}"
    env = dev_vault.add_workspace_role(f"role-{uuid.uuid4().hex[:8]}", tmp_path / "creds",
                                       key_path=path, audit_key_path=path + "-audit")
    (tmp_path / "mnt").mkdir()
    return Site(env=env, cipher_dir=tmp_path / "cipher", mountpoint=tmp_path / "mnt",
                dev_vault=dev_vault)


@contextmanager
def key_manager(site: Site) -> Iterator[KeyManager]:
    with VaultClient.from_settings(VaultSettings.from_env(site.env)) as vault:
        vault.login()
        yield KeyManager(vault, Gocryptfs(), site.cipher_dir)


@contextmanager
def mounted(site: Site, passphrase: Secret) -> Iterator[Path]:
    fs = Gocryptfs()
    fs.mount(site.cipher_dir, site.mountpoint, passphrase, allow_other=False)
    try:
        yield site.mountpoint
    finally:
        fs.unmount(site.mountpoint)


def cli(site: Site, *args: str, extra_env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], **site.env, "ST_CIPHER_DIR": str(site.cipher_dir),
           # the audit journal of rotate/rekey goes to the test's state dir, not the machine's
           "ST_STATE_DIR": str(site.cipher_dir.parent / "state"), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "entrypoint.cli", "keys", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=120, cwd=REPO)


def init_with_canary(site: Site) -> None:
    with key_manager(site) as keys:
        assert keys.init() == 1
        with mounted(site, keys.open_passphrase()) as root:
            (root / "canary.txt").write_bytes(CANARY)


def assert_opens(site: Site) -> None:
    with key_manager(site) as keys:
        passphrase = keys.open_passphrase()
    with mounted(site, passphrase) as root:
        assert (root / "canary.txt").read_bytes() == CANARY


def test_init_status_rotate_open(site: Site) -> None:
    init_with_canary(site)
    with key_manager(site) as keys:
        st = keys.status()
        assert st.active == 1 and st.pending is None and st.cipher_initialised
        with pytest.raises(VaultError, match="already exists"):
            keys.init()
        result = keys.rotate()
        assert (result.old_version, result.new_version, result.recovered) == (1, 2, False)
        states = {v.version: v.state for v in keys.status().versions}
        assert states == {1: "destroyed", 2: "active"}
    assert_opens(site)


def test_cli_status_never_prints_a_value(site: Site) -> None:
    init_with_canary(site)
    proc = cli(site, "rotate")
    assert proc.returncode == 0, proc.stderr
    assert "version 1 -> 2" in proc.stdout
    proc = cli(site, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["active"] == 2 and status["pending"] is None
    assert [v["state"] for v in status["versions"]] == ["destroyed", "active"]
    for value in site.all_values():
        assert value not in proc.stdout + proc.stderr


@pytest.mark.parametrize("step", ROTATE_STEPS)
def test_sigkill_at_every_rotate_step_leaves_an_openable_workspace(site: Site, step: str) -> None:
    init_with_canary(site)
    proc = cli(site, "rotate", extra_env={"ST_TEST_CRASH_AT": step})
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    assert_opens(site)  # active, else pending: whichever the crash left working
    with key_manager(site) as keys:
        result = keys.rotate()
        assert result.recovered is (step != "after_destroy")
        st = keys.status()
        live = [v.version for v in st.versions if v.state not in ("destroyed", "deleted")]
        assert live == [result.new_version] and st.active == result.new_version
        assert st.pending is None
    assert_opens(site)


def test_no_key_opens_means_exit_4_not_a_guess(site: Site) -> None:
    init_with_canary(site)
    other = site.cipher_dir.parent / "other-cipher"
    other.mkdir()
    Gocryptfs().init_cipher(other, Secret.generate())  # a cipher dir keyed by something else
    with VaultClient.from_settings(VaultSettings.from_env(site.env)) as vault:
        vault.login()
        vault.set_key_custom_metadata({"active": "1", "pending": "1"})  # forces the test mount
        with pytest.raises(VaultError, match="no key version in Vault opens") as err:
            KeyManager(vault, Gocryptfs(), other).open_passphrase()
        assert err.value.exit_code == 4
        with pytest.raises(WorkspaceError) as werr:
            KeyManager(vault, Gocryptfs(), site.cipher_dir.parent / "absent").rotate()
        assert werr.value.exit_code == 5


def test_secrets_stay_out_of_logs_argv_and_environ(site: Site,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    init_with_canary(site)
    with key_manager(site) as keys:
        keys.rotate()
        passphrase = keys.open_passphrase()
    value = passphrase.reveal().decode()
    secret_id = Path(site.env["ST_VAULT_SECRET_ID_FILE"]).read_text()
    with mounted(site, passphrase):
        daemons = _gocryptfs_pids(site.cipher_dir)
        assert daemons, "the gocryptfs mount daemon should be running"
        for pid in daemons:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            for needle in (value, secret_id):
                assert needle not in cmdline and needle not in environ
    for needle in [value, secret_id, *site.all_values()]:
        assert needle not in caplog.text


def _gocryptfs_pids(cipher_dir: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"gocryptfs") and str(cipher_dir).encode() in argv:
            pids.append(int(entry.name))
    return pids
