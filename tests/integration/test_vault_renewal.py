"""Token renewal and revocation against a real OpenBao: a short-TTL token outlives its TTL while
the renewal thread runs, the same kind of token without renewal expires, and teardown revokes."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import pytest

from entrypoint.errors import VaultAuthError
from entrypoint.vault.client import VaultClient
from entrypoint.vault.devserver import DevVault
from entrypoint.vault.settings import VaultSettings

pytestmark = pytest.mark.integration
KEY_PATH = "secure-trainer/renewal-test"


def test_renewal_keeps_a_short_token_alive(dev_vault: DevVault,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    root = dev_vault.root_client()
    root.secrets.kv.v2.create_or_update_secret(path=KEY_PATH, secret={"passphrase": "z" * 64})
    make = {"policies": ["default"], "ttl": "3s", "explicit_max_ttl": "120s",
            "renewable": True}
    renewed_token = root.auth.token.create(**make)["auth"]["client_token"]
    plain_token = root.auth.token.create(**make)["auth"]["client_token"]
    renewed = VaultClient.from_settings(VaultSettings.from_env(
        {"VAULT_ADDR": dev_vault.addr, "VAULT_TOKEN": renewed_token}))
    plain = VaultClient.from_settings(VaultSettings.from_env(
        {"VAULT_ADDR": dev_vault.addr, "VAULT_TOKEN": plain_token}))
    renewed.login()
    plain.login()
    assert renewed.start_renewal()
    try:
        time.sleep(5.5)  # well past the 3 s TTL
        assert renewed.renewing and not renewed.renewal_failed
        assert renewed.token_ttl() > 0
        with pytest.raises(VaultAuthError, match="expired"):
            plain.token_ttl()
    finally:
        renewed.stop_renewal()
    assert not renewed.renewing  # stopped cleanly, thread joined
    assert renewed_token not in caplog.text and plain_token not in caplog.text


def test_renewal_is_a_noop_for_tokens_that_do_not_expire(dev_vault: DevVault) -> None:
    client = VaultClient.from_settings(VaultSettings.from_env(
        {"VAULT_ADDR": dev_vault.addr, "VAULT_TOKEN": dev_vault.root_token.reveal_str()}))
    client.login()
    assert client.token_ttl() == 0
    assert client.start_renewal() is False
    client.close()


def test_context_exit_revokes_an_owned_token(dev_vault: DevVault, tmp_path: Path) -> None:
    path = f"secure-trainer/revoke-{uuid.uuid4().hex[:8]}"
    env = dev_vault.add_workspace_role(f"role-{uuid.uuid4().hex[:8]}", tmp_path, key_path=path,
                                       audit_key_path=path + "-audit", token_ttl="30s")
    with VaultClient.from_settings(VaultSettings.from_env(env)) as client:
        client.login()
        accessor = client.token_accessor()
        assert client.start_renewal()
    assert not client.renewing
    answer = dev_vault.root_client().adapter.post(
        "/v1/auth/token/lookup-accessor", json={"accessor": accessor}, raise_exception=False)
    assert answer.status_code == 400  # the accessor (so the token) is gone
