"""`VaultSettings`: where Vault is, how to log in, where the workspace key lives — built from env once.

The environment is read only in `VaultSettings.from_env`, never at import, and hvac is never
left to read it on its own (see vault.py). A token given through `VAULT_TOKEN` is held as a
`Secret`. Must never: put a secret in an error message, or turn TLS verification off unless the
explicitly dev-only `ST_VAULT_TLS_SKIP_VERIFY` is set.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

from entrypoint.errors import ConfigError
from entrypoint.secret import Secret

log = logging.getLogger(__name__)

DEFAULT_K8S_TOKEN_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
# KV paths are relative segments: letters, digits, `-_.` and `/` between segments, no `..`.
_KV_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class AuthKind(str, Enum):
    """The Vault auth methods secure-trainer can log in with (`ST_VAULT_AUTH`)."""

    TOKEN = "token"
    APPROLE = "approle"
    KUBERNETES = "kubernetes"
    JWT = "jwt"


@dataclass(frozen=True)
class VaultSettings:
    """Everything the Vault client needs, validated.

    Attributes:
        addr: Vault base URL (`VAULT_ADDR`), `http(s)://host[:port]`.
        cacert: CA bundle that signs the server certificate (`VAULT_CACERT`), or None for the
            system store.
        namespace: Vault Enterprise / OpenBao namespace (`VAULT_NAMESPACE`), or None.
        auth: the login method (`ST_VAULT_AUTH`, default `token`).
        token: a token given directly (`VAULT_TOKEN`), token auth only.
        token_file: a file holding the token (`VAULT_TOKEN_FILE`), token auth only.
        role_id_file / secret_id_file: AppRole credential files.
        secret_id_wrapped: the secret_id file holds a response-wrapping token, unwrapped once.
        role: role name for kubernetes/jwt auth (`ST_VAULT_ROLE`).
        jwt_file: the JWT to present for jwt auth (`ST_VAULT_JWT_FILE`).
        k8s_token_file: service-account token for kubernetes auth (`ST_VAULT_K8S_TOKEN_FILE`).
        auth_mount: mount path of the auth method (`ST_VAULT_AUTH_MOUNT`, default = method name).
        kv_mount: KV v2 mount (`ST_VAULT_KV_MOUNT`, default `secret`).
        key_path: workspace passphrase path in the mount (`ST_VAULT_KEY_PATH`).
        audit_key_path: app audit-log HMAC key path in the mount (`ST_VAULT_AUDIT_KEY_PATH`).
        unsafe_tls_skip_verify: dev only (`ST_VAULT_TLS_SKIP_VERIFY=1`): do not verify TLS.
        timeout_s: per-request timeout in seconds (`ST_VAULT_TIMEOUT`, default 10).
    """

    addr: str
    cacert: Path | None = None
    namespace: str | None = None
    auth: AuthKind = AuthKind.TOKEN
    token: Secret | None = field(default=None, repr=False, compare=False)
    token_file: Path | None = None
    role_id_file: Path | None = None
    secret_id_file: Path | None = None
    secret_id_wrapped: bool = False
    role: str | None = None
    jwt_file: Path | None = None
    k8s_token_file: Path = DEFAULT_K8S_TOKEN_FILE
    auth_mount: str | None = None
    kv_mount: str = "secret"
    key_path: str = "secure-trainer/workspace"
    audit_key_path: str = "secure-trainer/audit"
    unsafe_tls_skip_verify: bool = False
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.addr)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("VAULT_ADDR must be an http:// or https:// URL with a host")
        if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
            raise ConfigError("VAULT_ADDR must be scheme://host[:port] only")
        for name, value in (("ST_VAULT_KV_MOUNT", self.kv_mount),
                            ("ST_VAULT_KEY_PATH", self.key_path),
                            ("ST_VAULT_AUDIT_KEY_PATH", self.audit_key_path)):
            if not _KV_PATH.match(value) or ".." in value.split("/"):
                raise ConfigError(f"{name} must be a relative path of letters, digits, -_. and /")
        if self.auth_mount is not None and not _KV_PATH.match(self.auth_mount):
            raise ConfigError("ST_VAULT_AUTH_MOUNT must be a relative path")
        if self.key_path == self.audit_key_path:
            raise ConfigError("ST_VAULT_KEY_PATH and ST_VAULT_AUDIT_KEY_PATH must differ")
        if self.timeout_s <= 0:
            raise ConfigError("ST_VAULT_TIMEOUT must be a positive number of seconds")
        self._check_auth_inputs()

    def _check_auth_inputs(self) -> None:
        if self.auth is AuthKind.TOKEN:
            if self.token is None and self.token_file is None:
                raise ConfigError("token auth needs VAULT_TOKEN or VAULT_TOKEN_FILE "
                                  "(or choose another ST_VAULT_AUTH)")
        elif self.auth is AuthKind.APPROLE:
            if self.role_id_file is None or self.secret_id_file is None:
                raise ConfigError("approle auth needs ST_VAULT_ROLE_ID_FILE and "
                                  "ST_VAULT_SECRET_ID_FILE")
        elif self.auth is AuthKind.KUBERNETES:
            if not self.role:
                raise ConfigError("kubernetes auth needs ST_VAULT_ROLE")
        elif self.auth is AuthKind.JWT and (not self.role or self.jwt_file is None):
            raise ConfigError("jwt auth needs ST_VAULT_ROLE and ST_VAULT_JWT_FILE")
        if self.secret_id_wrapped and self.auth is not AuthKind.APPROLE:
            raise ConfigError("ST_VAULT_SECRET_ID_WRAPPED applies to approle auth only")

    @property
    def uses_tls(self) -> bool:
        """True when the Vault address is https (a fact for the policy engine)."""
        return urlsplit(self.addr).scheme == "https"

    @property
    def is_loopback(self) -> bool:
        """True when the Vault host is a loopback address or `localhost`."""
        host = urlsplit(self.addr).hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def tls_verify(self) -> bool | str:
        """The `verify` argument for requests: a CA path, True, or False (dev opt-out only)."""
        if self.unsafe_tls_skip_verify:
            return False
        return str(self.cacert) if self.cacert is not None else True

    @property
    def effective_auth_mount(self) -> str:
        """The auth method's mount path (default: the method's own name)."""
        return self.auth_mount or self.auth.value

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> VaultSettings:
        """Build settings from an environment mapping (pass `os.environ` at the edge).

        Raises ConfigError naming the variable (never its value) when one is missing or invalid.
        """
        addr = env.get("VAULT_ADDR", "").strip()
        if not addr:
            raise ConfigError("VAULT_ADDR is not set (point it at your Vault server)")
        auth_raw = env.get("ST_VAULT_AUTH", "token").strip().lower() or "token"
        try:
            auth = AuthKind(auth_raw)
        except ValueError:
            names = ", ".join(k.value for k in AuthKind)
            raise ConfigError(f"ST_VAULT_AUTH must be one of: {names}") from None
        token_raw = env.get("VAULT_TOKEN", "")
        skip_verify = _flag(env, "ST_VAULT_TLS_SKIP_VERIFY")
        if skip_verify:
            log.warning("TLS verification of Vault is OFF (ST_VAULT_TLS_SKIP_VERIFY); dev only")
        try:
            timeout = float(env.get("ST_VAULT_TIMEOUT", "10"))
        except ValueError:
            raise ConfigError("ST_VAULT_TIMEOUT must be a number of seconds") from None
        return cls(
            addr=addr.rstrip("/"),
            cacert=_path(env, "VAULT_CACERT"),
            namespace=env.get("VAULT_NAMESPACE", "").strip() or None,
            auth=auth,
            token=Secret(token_raw.strip()) if token_raw.strip() else None,
            token_file=_path(env, "VAULT_TOKEN_FILE"),
            role_id_file=_path(env, "ST_VAULT_ROLE_ID_FILE"),
            secret_id_file=_path(env, "ST_VAULT_SECRET_ID_FILE"),
            secret_id_wrapped=_flag(env, "ST_VAULT_SECRET_ID_WRAPPED"),
            role=env.get("ST_VAULT_ROLE", "").strip() or None,
            jwt_file=_path(env, "ST_VAULT_JWT_FILE"),
            k8s_token_file=_path(env, "ST_VAULT_K8S_TOKEN_FILE") or DEFAULT_K8S_TOKEN_FILE,
            auth_mount=env.get("ST_VAULT_AUTH_MOUNT", "").strip().strip("/") or None,
            kv_mount=env.get("ST_VAULT_KV_MOUNT", "secret").strip().strip("/") or "secret",
            key_path=env.get("ST_VAULT_KEY_PATH", "secure-trainer/workspace").strip().strip("/"),
            audit_key_path=env.get("ST_VAULT_AUDIT_KEY_PATH", "secure-trainer/audit")
            .strip().strip("/"),
            unsafe_tls_skip_verify=skip_verify,
            timeout_s=timeout,
        )


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value) if value else None


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be 1 or 0")
