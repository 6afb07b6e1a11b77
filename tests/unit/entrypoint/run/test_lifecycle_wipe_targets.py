"""The run's scratch wipe never takes the cipher dir or a Vault credential file with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.audit.auditctl import Auditctl
from entrypoint.run.lifecycle import Lifecycle, RunSettings
from entrypoint.vault.client import VaultClient
from entrypoint.vault.settings import VaultSettings
from entrypoint.workspace.gocryptfs import Gocryptfs


def _life(cipher: Path, creds: tuple[Path, ...], state: Path) -> Lifecycle:
    env = {"ST_CIPHER_DIR": str(cipher), "ST_MOUNTPOINT": "/srv/st/mnt",
           "ST_STATE_DIR": str(state), "ST_TRAIN_UID": "none"}
    settings = RunSettings.from_env(env, policy="dev", train_args=[], vault_files=creds)
    vault = VaultClient.from_settings(VaultSettings.from_env(
        {"VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "dev-only", "ST_VAULT_AUTH": "token"}))
    return Lifecycle(settings, vault=vault, gocryptfs=Gocryptfs(), auditctl=Auditctl(),
                     echo=lambda _line: None)


def test_container_wipe_keeps_a_cipher_dir_under_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ST_IN_CONTAINER", "1")
    targets = _life(Path("/tmp/site/cipher"), (), Path("/run/st"))._wipe_targets()
    assert Path("/tmp") not in targets
    assert Path("/var/tmp") in targets and Path("/run/st/tmp") in targets


def test_container_wipe_keeps_vault_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ST_IN_CONTAINER", "1")
    targets = _life(Path("/srv/cipher"), (Path("/var/tmp/creds/secret_id"),),
                    Path("/run/st"))._wipe_targets()
    assert Path("/tmp") in targets and Path("/var/tmp") not in targets


def test_default_run_targets_on_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ST_IN_CONTAINER", raising=False)
    targets = _life(Path("/srv/cipher"), (), Path("/run/st"))._wipe_targets()
    assert Path("/tmp") not in targets and Path("/run/st/tmp") in targets
