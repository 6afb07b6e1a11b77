"""VaultSettings.from_env: parsing, validation, and never leaking a token through repr/errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.vault.settings import AuthKind, VaultSettings

BASE = {"VAULT_ADDR": "https://vault.example:8200", "VAULT_TOKEN": "hvs.canary"}


def test_defaults_and_only_the_given_mapping_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://elsewhere:1")
    monkeypatch.setenv("ST_VAULT_KEY_PATH", "from/process/env")
    s = VaultSettings.from_env(BASE)
    assert s.addr == "https://vault.example:8200" and s.auth is AuthKind.TOKEN
    assert s.kv_mount == "secret" and s.key_path == "secure-trainer/workspace"
    assert s.audit_key_path == "secure-trainer/audit"
    assert s.tls_verify is True and s.uses_tls and not s.is_loopback
    assert s.token is not None and s.token.reveal_str() == "hvs.canary"
    assert "hvs.canary" not in repr(s)


def test_every_variable_is_honoured(tmp_path: Path) -> None:
    env = {
        "VAULT_ADDR": "http://127.0.0.1:8200/", "VAULT_CACERT": str(tmp_path / "ca.pem"),
        "VAULT_NAMESPACE": "team-a", "ST_VAULT_AUTH": "approle",
        "ST_VAULT_ROLE_ID_FILE": "/run/r", "ST_VAULT_SECRET_ID_FILE": "/run/s",
        "ST_VAULT_SECRET_ID_WRAPPED": "1", "ST_VAULT_KV_MOUNT": "kv/", "ST_VAULT_KEY_PATH": "a/b",
        "ST_VAULT_AUDIT_KEY_PATH": "a/c", "ST_VAULT_AUTH_MOUNT": "approle-ci",
        "ST_VAULT_TIMEOUT": "3.5",
    }
    s = VaultSettings.from_env(env)
    assert s.addr == "http://127.0.0.1:8200" and s.is_loopback and not s.uses_tls
    assert s.tls_verify == str(tmp_path / "ca.pem") and s.namespace == "team-a"
    assert s.auth is AuthKind.APPROLE and s.secret_id_wrapped
    assert s.role_id_file == Path("/run/r") and s.secret_id_file == Path("/run/s")
    assert (s.kv_mount, s.key_path, s.audit_key_path) == ("kv", "a/b", "a/c")
    assert s.effective_auth_mount == "approle-ci" and s.timeout_s == 3.5


def test_tls_skip_verify_is_explicit() -> None:
    assert VaultSettings.from_env({**BASE, "ST_VAULT_TLS_SKIP_VERIFY": "1"}).tls_verify is False
    # The generic VAULT_SKIP_VERIFY is deliberately not honoured.
    assert VaultSettings.from_env({**BASE, "VAULT_SKIP_VERIFY": "1"}).tls_verify is True
    with pytest.raises(ConfigError, match="ST_VAULT_TLS_SKIP_VERIFY"):
        VaultSettings.from_env({**BASE, "ST_VAULT_TLS_SKIP_VERIFY": "maybe"})


@pytest.mark.parametrize(("env", "names"), [
    ({"VAULT_TOKEN": "hvs.canary"}, "VAULT_ADDR"),
    ({**BASE, "VAULT_ADDR": "vault:8200"}, "VAULT_ADDR"),
    ({**BASE, "VAULT_ADDR": "https://v/ui?x=hvs.canary"}, "VAULT_ADDR"),
    ({**BASE, "ST_VAULT_AUTH": "ldap"}, "ST_VAULT_AUTH"),
    ({"VAULT_ADDR": "https://v"}, "VAULT_TOKEN"),
    ({**BASE, "ST_VAULT_AUTH": "approle"}, "ST_VAULT_ROLE_ID_FILE"),
    ({**BASE, "ST_VAULT_AUTH": "kubernetes"}, "ST_VAULT_ROLE"),
    ({**BASE, "ST_VAULT_AUTH": "jwt", "ST_VAULT_ROLE": "r"}, "ST_VAULT_JWT_FILE"),
    ({**BASE, "ST_VAULT_SECRET_ID_WRAPPED": "1"}, "ST_VAULT_SECRET_ID_WRAPPED"),
    ({**BASE, "ST_VAULT_KEY_PATH": "../etc"}, "ST_VAULT_KEY_PATH"),
    ({**BASE, "ST_VAULT_AUDIT_KEY_PATH": "secure-trainer/workspace"}, "ST_VAULT_AUDIT_KEY_PATH"),
    ({**BASE, "ST_VAULT_TIMEOUT": "-1"}, "ST_VAULT_TIMEOUT"),
])
def test_bad_settings_name_the_variable_not_the_value(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        VaultSettings.from_env(env)
    assert names in err.value.message and err.value.exit_code == 2
    assert "hvs.canary" not in err.value.message
