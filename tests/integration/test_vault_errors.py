"""Vault failure modes against a real OpenBao: each is a VaultError subclass, exit 4, one line,
naming the fix, with no URL, Vault path or token in it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from entrypoint.errors import (
    SecretMissing,
    VaultAuthError,
    VaultError,
    VaultSealed,
    VaultUnreachable,
)
from entrypoint.secret import Secret
from entrypoint.vault.client import VaultClient
from entrypoint.vault.devserver import DevVault
from entrypoint.vault.settings import VaultSettings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
KEY_PATH = "secure-trainer/errors-test"


def assert_safe(err: VaultError, *secret_values: str) -> None:
    """Exit 4, a single line that ends with a fix in parentheses and leaks nothing."""
    msg = err.message
    assert err.exit_code == 4
    assert "\n" not in msg and msg == msg.strip()
    assert msg.endswith(")"), msg  # "... (what to do)"
    for leak in ("://", "127.0.0.1", KEY_PATH, "/v1/", "secret/"):
        assert leak not in msg, msg
    for value in secret_values:
        assert value not in msg


def client_for(env: dict[str, str]) -> VaultClient:
    return VaultClient.from_settings(VaultSettings.from_env(env))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def test_unreachable(tmp_path: Path) -> None:
    env = {"VAULT_ADDR": f"http://127.0.0.1:{closed_port()}", "VAULT_TOKEN": "hvs.canary-token"}
    with pytest.raises(VaultUnreachable) as err:
        client_for(env).login()
    assert "VAULT_ADDR" in err.value.message
    assert_safe(err.value, "hvs.canary-token")
    # The same failure through the real CLI: exit 4 and one stderr line.
    proc = subprocess.run(
        [sys.executable, "-m", "entrypoint.cli", "keys", "status", "--cipher-dir",
         str(tmp_path)], env={"PATH": os.environ["PATH"], **env}, capture_output=True,
        text=True, check=False, timeout=60, cwd=REPO)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error[vault]: cannot reach")
    assert "hvs.canary-token" not in proc.stderr


def test_sealed(tmp_path: Path) -> None:
    vault = DevVault.start(tmp_path / "bao-sealed")  # its own server: sealing is not undone
    try:
        root = vault.root_token.reveal_str()
        logged_in = client_for({"VAULT_ADDR": vault.addr, "VAULT_TOKEN": root,
                                "ST_VAULT_KEY_PATH": KEY_PATH})
        logged_in.login()
        vault.root_client().sys.seal()
        with pytest.raises(VaultSealed) as err:
            client_for({"VAULT_ADDR": vault.addr, "VAULT_TOKEN": root}).login()
        assert_safe(err.value, root)
        with pytest.raises(VaultSealed) as err:
            logged_in.read_passphrase()
        assert_safe(err.value, root)
    finally:
        vault.stop()


def test_permission_denied(dev_vault: DevVault) -> None:
    root = dev_vault.root_client()
    root.secrets.kv.v2.create_or_update_secret(path=KEY_PATH, secret={"passphrase": "x" * 64})
    token = root.auth.token.create(policies=["default"], ttl="5m")["auth"]["client_token"]
    client = client_for({"VAULT_ADDR": dev_vault.addr, "VAULT_TOKEN": token,
                         "ST_VAULT_KEY_PATH": KEY_PATH})
    client.login()
    with pytest.raises(VaultAuthError, match="denied access to the workspace key") as err:
        client.read_passphrase()
    assert_safe(err.value, token)
    with pytest.raises(VaultAuthError, match="denied access") as err:
        client.write_passphrase(Secret.generate(), cas=1)
    assert_safe(err.value, token)


def test_missing_secret(dev_vault: DevVault) -> None:
    path = f"secure-trainer/missing-{uuid.uuid4().hex[:8]}"
    root_token = dev_vault.root_token.reveal_str()
    client = client_for({"VAULT_ADDR": dev_vault.addr, "VAULT_TOKEN": root_token,
                         "ST_VAULT_KEY_PATH": path})
    client.login()
    with pytest.raises(SecretMissing, match="keys init") as err:
        client.read_passphrase()
    assert_safe(err.value, root_token)
    assert path not in err.value.message
    with pytest.raises(SecretMissing) as err:
        client.audit_key()
    assert_safe(err.value, root_token)


def test_expired_token(dev_vault: DevVault) -> None:
    root = dev_vault.root_client()
    root.secrets.kv.v2.create_or_update_secret(path=KEY_PATH, secret={"passphrase": "y" * 64})
    short = root.auth.token.create(policies=["default"], ttl="2s")["auth"]["client_token"]
    # Logged in while valid, used after expiry: the probe tells expiry from a missing policy.
    running = client_for({"VAULT_ADDR": dev_vault.addr, "VAULT_TOKEN": short,
                          "ST_VAULT_KEY_PATH": KEY_PATH})
    running.login()
    time.sleep(3)
    with pytest.raises(VaultAuthError, match="expired") as err:
        running.read_passphrase()
    assert_safe(err.value, short)
    # Supplied already expired: refused at login.
    with pytest.raises(VaultAuthError, match="invalid or expired") as err:
        client_for({"VAULT_ADDR": dev_vault.addr, "VAULT_TOKEN": short}).login()
    assert_safe(err.value, short)


def test_bad_role_id_and_missing_credential_file(dev_vault: DevVault, tmp_path: Path) -> None:
    env = dev_vault.add_workspace_role(f"role-{uuid.uuid4().hex[:8]}", tmp_path,
                                       key_path=KEY_PATH, audit_key_path=KEY_PATH + "-audit")
    secret_id = Path(env["ST_VAULT_SECRET_ID_FILE"]).read_text()
    Path(env["ST_VAULT_ROLE_ID_FILE"]).write_text(str(uuid.uuid4()))
    with pytest.raises(VaultAuthError, match="approle login was refused") as err:
        client_for(env).login()
    assert "role_id" in err.value.message
    assert_safe(err.value, secret_id)
    Path(env["ST_VAULT_ROLE_ID_FILE"]).unlink()
    with pytest.raises(VaultAuthError, match="ST_VAULT_ROLE_ID_FILE") as err:
        client_for(env).login()
    assert_safe(err.value, secret_id)
    assert str(tmp_path) not in err.value.message
